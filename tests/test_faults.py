"""Faults on the real serving path (session -> tiny BLIP-2 backend -> batched engine): a generation killed
mid-stream, a backend that raises, a simulated out-of-memory error. Each gives a clear message in the chat,
and the session (and every other session) keeps answering normally afterwards."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.chat import session
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import BackendOptions, GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=6)


class Faulty:
    """Wraps the LM the scheduler calls: `fail(error, after=n)` raises `error` on the n-th call from now."""

    def __init__(self, lm):
        self.lm, self.countdown, self.error = lm, None, None
        self.calls = 0

    def fail(self, error: BaseException, after: int = 1) -> None:
        self.error, self.countdown = error, after

    def __call__(self, **kwargs):
        self.calls += 1
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown == 0:
                self.countdown, error = None, self.error
                raise error
        return self.lm(**kwargs)

    def __getattr__(self, name):
        return getattr(self.lm, name)


@pytest.fixture
def served(tiny_blip2_dir, install, close_after, monkeypatch):
    backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir))))
    faulty = Faulty(backend.model.language_model)
    backend.scheduler.lm = backend.scheduler.decode_lm = faulty  # prefill and decode steps
    install(blip2=backend)
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)
    return backend, faulty


@pytest.fixture
def picture(tmp_path):
    def make(color=(200, 30, 30), name="pic.png"):
        path = tmp_path / name
        Image.new("RGB", (64, 48), color).save(path)
        return str(path)

    return make


def ask(s: ChatSession, image, question, settings=SETTINGS) -> str:
    list(s.ask(image, question, "blip2", settings))
    return s.history()[-1]["answer"]


def reference(backend, image_path, questions) -> list[str]:
    """The same conversation in a fresh session: what an undisturbed session answers."""
    s = ChatSession()
    return [ask(s, image_path if i == 0 else None, q) for i, q in enumerate(questions)]


def test_generation_killed_mid_stream_keeps_the_partial_answer(served, picture):
    backend, _ = served
    s = ChatSession()
    ask(s, picture(), "what is it?")
    steps = s.ask(None, "tell me more", "blip2", GenerationSettings(max_new_tokens=150))
    for _status in steps:
        if s.pending is not None and len(s.pending.answer) > 5:
            break
    steps.close()  # the browser tab went away / the request was cancelled mid-stream
    last = s.conversation.turns[-1]
    assert last.stopped and last.answer
    assert ask(s, None, "and now?")  # the session still answers
    for _ in range(100):  # the engine dropped the cancelled row
        if backend.scheduler.load() == (0, 0):
            break
        threading.Event().wait(0.02)
    assert backend.scheduler.load() == (0, 0)


@pytest.mark.parametrize(
    "error, message",
    [(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ran out of memory"),
     (MemoryError(), "ran out of memory"),
     (RuntimeError("shape mismatch in layer 3"), "Generating the answer failed: shape mismatch")],
    ids=["cuda-oom", "cpu-oom", "raises"],
)  # fmt: skip
def test_a_failing_model_gives_a_message_and_the_session_recovers(served, picture, error, message):
    backend, faulty = served
    image = picture()
    s = ChatSession()
    expected = reference(backend, image, ["what is it?", "why?", "where?"])
    assert ask(s, image, "what is it?") == expected[0]
    faulty.fail(error, after=3)  # the prefill and one decode step pass, then the model fails
    with pytest.raises(ChatError, match=message):
        ask(s, None, "why?")
    chat = s.transcript()
    assert message.split(":")[0] in chat[-1]["text"] and "Traceback" not in chat[-1]["text"]
    # the partial answer was kept (marked stopped) or, if nothing came, the turn was dropped; either way
    # the next turn is answered, from a clean state (the prefix cache was dropped, not half-updated)
    s.conversation.turns = [t for t in s.conversation.turns if not t.stopped]
    assert ask(s, None, "why?") == expected[1]
    assert ask(s, None, "where?") == expected[2]


def test_a_failure_reaches_every_session_in_the_batch_and_all_recover(served, picture):
    backend, faulty = served
    images = [picture((40 * i, 200 - 40 * i, 90), f"p{i}.png") for i in range(4)]
    sessions = [ChatSession() for _ in images]
    expected = [reference(backend, im, ["q one?", "q two?"]) for im in images]
    for s, im in zip(sessions, images):
        ask(s, im, "q one?")
    errors: list[str] = []
    start = threading.Barrier(len(sessions))

    def second_turn(s):
        start.wait()
        try:
            ask(s, None, "q two?", GenerationSettings(max_new_tokens=60))
        except ChatError as e:
            errors.append(str(e))

    faulty.fail(torch.OutOfMemoryError("CUDA out of memory (simulated)"), after=8)
    threads = [threading.Thread(target=second_turn, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors and all("ran out of memory" in e for e in errors)
    for s, want in zip(sessions, expected):
        s.conversation.turns = s.conversation.turns[:1]
        assert ask(s, None, "q two?") == want[1]
