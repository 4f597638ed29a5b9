"""Continuous batching on tiny random models: batched answers == one-at-a-time answers,
sessions joining between steps, no leaks between sessions, cancellation, failures and "busy"."""

from __future__ import annotations

import threading
from contextlib import closing

import pytest
import torch
from PIL import Image

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.engine.batching import Scheduler
from vqa_chat.engine.types import BackendOptions, BusyError, GenerationSettings, Inputs

PROMPTS = [
    "Question: what is in the picture? Answer:",
    "Question: what color is the car? Answer: the car is blue Question: and the sky? Answer:",
    "Question: hi Answer:",
    "a bowl of green apples on a wooden table near the window",
    "Question: how many dogs? Answer: two Question: where? Answer: in the grass Question: why? Answer:",
    "Question: where is the man? Answer:",
]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def backend(tiny_blip2_dir):
    with closing(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), max_batch=8))) as backend:
        yield backend


@pytest.fixture(scope="module")
def reference(tiny_blip2_dir):
    with closing(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate"))) as backend:
        yield backend


@pytest.fixture(scope="module")
def inputs(backend):
    """Per session: (LM input embeds [T, D], prompt ids, image tokens, prompt)."""
    out = []
    for color, prompt in zip(COLORS, PROMPTS):
        image = backend.encode_image(Image.new("RGB", (40, 40), color))
        with torch.no_grad():
            embeds, ids = backend._prompt_embeds(image, prompt)
        out.append((embeds, ids, image, prompt))
    return out


def settings_for(i: int) -> GenerationSettings:
    """Different settings per session: plain and our defaults, different lengths."""
    return GenerationSettings(max_new_tokens=8 + 3 * i, plain=i % 2 == 0)


def one_at_a_time(reference, inputs) -> list[str]:
    return ["".join(reference.stream(image, prompt, settings_for(i))) for i, (_, _, image, prompt) in
            enumerate(inputs)]  # fmt: skip


def test_concurrent_sessions_equal_one_at_a_time(backend, reference, inputs, close_after):
    expected = one_at_a_time(reference, inputs)
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=8))
    gens = [scheduler.submit(Inputs.ready(e, ids), settings_for(i)) for i, (e, ids, *_) in enumerate(inputs)]
    got = ["".join(g) for g in gens]
    assert got == expected and all(expected)
    assert scheduler.max_rows > 1  # they really were decoded together


def test_sessions_join_between_steps(backend, reference, inputs, close_after):
    """A long answer runs; others join after it started and leave before it ends; nothing changes."""
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=8))
    long = GenerationSettings(max_new_tokens=150, plain=True)  # the tiny BLIP-2 never emits EOS
    first = scheduler.submit(Inputs.ready(inputs[0][0], inputs[0][1]), long)
    pieces = iter(first)
    head = [next(pieces) for _ in range(3)]  # it is decoding now
    others = [scheduler.submit(Inputs.ready(e, ids), settings_for(i))
              for i, (e, ids, _, _) in enumerate(inputs) if i]  # fmt: skip
    got = ["".join(g) for g in others]
    whole = "".join(head) + "".join(pieces)
    assert got == one_at_a_time(reference, inputs)[1:]
    assert whole == "".join(reference.stream(inputs[0][2], inputs[0][3], long))
    assert scheduler.max_rows >= 3


def test_states_stay_with_their_sessions(backend, inputs, close_after):
    """Each session's prefix cache holds its own input, and a follow-up through the batch still matches."""
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=8))
    states = [backend.new_state() for _ in inputs]
    gens = [scheduler.submit(Inputs.ready(e, ids), settings_for(i), state=s)
            for i, ((e, ids, _, _), s) in enumerate(zip(inputs, states))]  # fmt: skip
    answers = ["".join(g) for g in gens]
    for (embeds, _, _, _), state in zip(inputs, states):
        assert torch.equal(state.embeds[: embeds.shape[0]], embeds)
    # follow-ups for all sessions at once, cached, vs the same follow-ups alone and uncached
    follow = []
    for (_, _, image, prompt), answer in zip(inputs, answers):
        with torch.no_grad():
            follow.append(backend._prompt_embeds(image, f"{prompt} {answer.strip()} Question: why? Answer:"))
    gens = [scheduler.submit(Inputs.ready(e, ids), settings_for(i), state=s)
            for i, ((e, ids), s) in enumerate(zip(follow, states))]  # fmt: skip
    cached = ["".join(g) for g in gens]
    alone = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=1))
    assert cached == ["".join(alone.submit(Inputs.ready(e, ids), settings_for(i)))
                      for i, (e, ids) in enumerate(follow)]  # fmt: skip
    assert all(s.hits > 0 for s in states)


def test_a_cancelled_session_leaves_the_others_untouched(backend, reference, inputs, close_after):
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=8))
    stop = threading.Event()
    victim = iter(scheduler.submit(Inputs.ready(inputs[0][0]), GenerationSettings(150, plain=True), stop))
    next(victim)
    others = [scheduler.submit(Inputs.ready(e, ids), settings_for(i))
              for i, (e, ids, _, _) in enumerate(inputs) if i]  # fmt: skip
    stop.set()  # the Stop button
    rest = "".join(victim)  # ends early
    assert len(rest) < 100
    assert ["".join(g) for g in others] == one_at_a_time(reference, inputs)[1:]


class FlakyLM:
    """The LM, except that forward call number `fail_at` raises a simulated out-of-memory error."""

    def __init__(self, lm, fail_at: int):
        self.lm, self.calls, self.fail_at = lm, 0, fail_at

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.lm(**kwargs)

    def __getattr__(self, name):
        return getattr(self.lm, name)


def test_a_failing_step_fails_its_rows_and_the_scheduler_keeps_serving(backend, reference, inputs,
                                                                        close_after):  # fmt: skip
    lm = FlakyLM(backend.model.language_model, fail_at=5)
    scheduler = close_after(Scheduler(lm, backend.tokenizer, max_batch=8))
    state = backend.new_state()
    gen = scheduler.submit(Inputs.ready(inputs[0][0]), GenerationSettings(50, plain=True), state=state)
    with pytest.raises(torch.OutOfMemoryError):
        "".join(gen)
    assert state.kv is None  # dropped, not half-updated
    again = scheduler.submit(Inputs.ready(inputs[1][0], inputs[1][1]), settings_for(1), state=state)
    assert "".join(again) == one_at_a_time(reference, inputs)[1]


def test_a_full_waiting_line_says_busy(backend, inputs, close_after):
    lm = backend.model.language_model
    scheduler = close_after(Scheduler(lm, backend.tokenizer, max_batch=1, max_waiting=1))
    stop = threading.Event()
    running = iter(scheduler.submit(Inputs.ready(inputs[0][0]), GenerationSettings(200, plain=True), stop))
    next(running)  # admitted: the batch (of 1) is full
    waiting = scheduler.submit(Inputs.ready(inputs[1][0]), settings_for(1))
    with pytest.raises(BusyError, match="busy"):
        scheduler.submit(Inputs.ready(inputs[2][0]), settings_for(2))
    stop.set()
    list(running)
    assert "".join(waiting)  # served once a slot was free


def test_closed_scheduler_refuses_and_thread_ends(backend, inputs, close_after):
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer))
    assert "".join(scheduler.submit(Inputs.ready(inputs[2][0]), settings_for(2)))
    scheduler.close()
    assert not scheduler.thread.is_alive()
    with pytest.raises(RuntimeError, match="shutting down"):
        scheduler.submit(Inputs.ready(inputs[2][0]), settings_for(2))


def test_an_error_outside_the_model_call_still_reaches_the_reader(backend, inputs, monkeypatch, close_after):
    """E.g. a logits processor that raises while the first token is chosen: no reader may hang."""
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer))

    def broken(self, generated, logits):
        raise ValueError("processor failed")

    monkeypatch.setattr("vqa_chat.engine.decoding.Sampler.__call__", broken)
    with pytest.raises(ValueError, match="processor failed"):
        "".join(scheduler.submit(Inputs.ready(inputs[0][0]), settings_for(0)))
    monkeypatch.undo()
    assert "".join(scheduler.submit(Inputs.ready(inputs[0][0]), settings_for(0)))
    assert scheduler.load() == (0, 0)
