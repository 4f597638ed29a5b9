"""The engine's batched intake on the tiny custom model: questions of several sessions that arrive together
get their image tokens (Q-Former) in one call and their prompts prefilled in one padded forward, and every
session's answers equal the same conversation asked alone (greedy)."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image

from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.prefill import prefill
from vqa_chat.engine.types import BackendOptions, GenerationSettings, Inputs

COLORS = ["red", "blue", "green", "yellow", "purple"]
QUESTIONS = [  # per session, one question per turn: different lengths, so rows are padded differently
    ["What color is the shape?", "Is it big?", "And the background, what color is that one?"],
    ["What shape is in the image?", "Why?", "Is there anything else?"],
    ["How many?", "Is the circle on the left side of the picture or on the right side?", "Sure?"],
    ["Is there a square in the picture?", "What color?", "Where?"],
    ["Hi", "What is it?", "Is it round or does it have corners, like a square or a triangle?"],
]


def settings_for(i: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=3 + 2 * i, plain=i % 2 == 0)


class Sessions:
    """Conversations of several sessions on one backend, each with its image, prefix cache and turns."""

    def __init__(self, backend: CustomBackend, stateless: int | None = None):
        self.backend = backend
        self.patches = [backend.encode_image(Image.new("RGB", (48, 48), c)) for c in COLORS]
        self.states = [None if i == stateless else backend.new_state() for i in range(len(COLORS))]
        self.turns: list[list[Turn]] = [[] for _ in COLORS]

    def ask(self, i: int, turn: int) -> str:
        q = QUESTIONS[i][turn]
        prompt = format_prompt(self.turns[i], q)
        answer = "".join(self.backend.stream(self.patches[i], prompt, settings_for(i), state=self.states[i]))
        self.turns[i].append(Turn(question=q, answer=answer.strip()))
        return answer


def ask_together(sessions: Sessions, turn: int) -> list[str]:
    """Every session asks its next question while the engine is busy, so that all are taken in one intake."""
    scheduler = sessions.backend.scheduler
    held, release = threading.Event(), threading.Event()

    def hold(items):  # a request whose inputs take until every session has submitted
        held.set()
        release.wait(30)
        return [(sessions.patches[0].new_zeros(2, sessions.backend.model.lm.config.hidden_size), [])]

    blocker = scheduler.submit(Inputs(hold, None), GenerationSettings(max_new_tokens=1, plain=True))
    assert held.wait(30)  # the engine is busy with it: the questions below all wait together
    answers: list[str | None] = [None] * len(COLORS)
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, sessions.ask(i, turn)))
               for i in range(len(COLORS))]  # fmt: skip
    for t in threads:
        t.start()
    for _ in range(3000):  # all questions waiting behind the blocker (30 s at most)
        if scheduler.load()[1] == len(COLORS):
            break
        threading.Event().wait(0.01)
    release.set()
    "".join(blocker)
    for t in threads:
        t.join(60)
    return answers


@pytest.mark.parametrize("image_last", [True, False])
def test_sessions_asked_together_answer_as_alone(tiny_vlm, image_last, close_after):
    model = tiny_vlm(lm_image_last=image_last)
    backend = close_after(CustomBackend(model, options=BackendOptions(max_batch=8)))
    together, alone = Sessions(backend, stateless=3), Sessions(backend, stateless=3)
    intakes = []
    for turn in range(3):
        before = backend.scheduler.max_intake
        got = ask_together(together, turn)
        intakes.append(backend.scheduler.max_intake)
        want = [alone.ask(i, turn) for i in range(len(COLORS))]  # one at a time: batches of one
        assert got == want, f"turn {turn + 1}"
        assert backend.scheduler.max_intake >= before
    assert max(intakes) >= len(COLORS)  # the questions really were prefilled together (+ retries)
    reused = [s.hits for s in together.states if s is not None]
    if image_last:  # follow-ups reuse the conversation's KV, in the batch as alone
        assert all(h > 0 for h in reused) and reused == [s.hits for s in alone.states if s is not None]


def test_batched_prefill_equals_each_row_alone(tiny_vlm):
    """prefill(): rows with different cached prefixes and new lengths give each row's own KV and logits."""
    lm = tiny_vlm().lm
    torch.manual_seed(1)
    D = lm.config.hidden_size
    inputs = [torch.randn(T, D) * 0.1 for T in (7, 3, 11, 5)]
    cached_n = [4, 0, 2, 0]
    with torch.inference_mode():
        cached = []
        for x, n in zip(inputs, cached_n):  # the prefix KV each row's session would hold
            kv = prefill(lm, [x[:n]], [(None, 0)])[0][0] if n else None
            cached.append((kv, n))
        rows, logits = prefill(lm, inputs, cached)
        for i, x in enumerate(inputs):
            row, last = prefill(lm, [x], [(None, 0)])
            assert kvlib.length(rows[i]) == x.shape[0]
            for (k, v), (k1, v1) in zip(rows[i], row[0]):
                torch.testing.assert_close(k, k1, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(v, v1, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(logits[i], last[0], atol=1e-5, rtol=1e-4)


def test_a_failing_build_fails_only_its_requests(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm(), options=BackendOptions(max_batch=8)))
    patches = backend.encode_image(Image.new("RGB", (48, 48), "red"))

    def broken(items):
        raise ValueError("no inputs")

    with pytest.raises(ValueError, match="no inputs"):
        "".join(backend.scheduler.submit(Inputs(broken, None), GenerationSettings(max_new_tokens=2)))
    prompt = format_prompt([], "What color?")
    assert "".join(backend.stream(patches, prompt, GenerationSettings(max_new_tokens=2, plain=True)))


def test_the_answers_image_tokens_are_kept_for_its_top_answers(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm(), options=BackendOptions(max_batch=8)))
    patches = backend.encode_image(Image.new("RGB", (48, 48), "red"))
    prompt = format_prompt([], "What color?")
    "".join(backend.stream(patches, prompt, GenerationSettings(max_new_tokens=2, plain=True)))
    kept = backend.recent.take(patches, prompt)
    _, want, _ = backend.model.read_prompts(patches, [prompt])
    torch.testing.assert_close(kept, want)
    assert backend.recent.take(patches, prompt) is None  # taken once
    backend.recent.put(patches.clone(), prompt, want)  # patches gone at once: an id may come back, not them
    assert backend.recent.take(patches, prompt) is None
