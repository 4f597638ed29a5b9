"""The chat logic behind the UI and the API, on a fake backend (fast, deterministic, no model): the `fake`
fixture of conftest.py."""

from __future__ import annotations

import os
import time

import pytest
from PIL import Image

from vqa_chat.chat import session
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ui.events import stream_to_chat
from vqa_chat.ui.markdown import chat_messages


@pytest.fixture
def picture(tmp_path):
    def make(color=(200, 30, 30), name="pic.png"):
        path = tmp_path / name
        Image.new("RGB", (64, 48), color).save(path)
        return str(path)

    return make


def ask(s: ChatSession, image, question, backend="fake", max_new_tokens=3) -> list[str]:
    return list(s.ask(image, question, backend, GenerationSettings(max_new_tokens=max_new_tokens)))


def texts(s: ChatSession) -> str:
    return "\n".join(line["text"] for line in s.transcript())


def test_question_before_any_image(fake):
    s = ChatSession()
    with pytest.raises(ChatError, match="add an image first"):
        ask(s, None, "what is this?")
    assert s.history() == []
    assert s.transcript() == [
        {"role": "user", "text": "what is this?"},
        {"role": "assistant", "text": str(s.log[-1].text)},
    ]


def test_two_turns_encode_once_and_carry_the_conversation(fake, picture):
    s = ChatSession()
    statuses = ask(s, picture(), "  what is it? ")
    assert statuses[-1] == "Done."
    ask(s, picture(), "and the colour?")  # same upload again: same image, same segment
    backend = fake["fake"]
    assert backend.encoded == 1
    assert backend.prompts == [
        "Question: what is it? Answer:",
        "Question: what is it? Answer: w0 w1 w2 Question: and the colour? Answer:",
    ]
    assert [{k: h[k] for k in ("question", "answer", "backend")} for h in s.history()] == [
        {"question": "what is it?", "answer": "w0 w1 w2", "backend": "fake"},
        {"question": "and the colour?", "answer": "w0 w1 w2", "backend": "fake"},
    ]
    messages = chat_messages(s)
    assert messages[0]["role"] == "user" and os.path.exists(messages[0]["content"]["path"])
    assert [m["content"] for m in messages[1:]] == ["what is it?", "w0 w1 w2", "and the colour?", "w0 w1 w2"]


def test_switching_backend_mid_conversation(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    ask(s, None, "q2", backend="fake2")
    assert fake["fake2"].encoded == 1 and fake["fake"].encoded == 1
    assert fake["fake2"].prompts == ["Question: q1 Answer: w0 w1 w2 Question: q2 Answer:"]
    assert [t["backend"] for t in s.history()] == ["fake", "fake2"]
    assert "Now answering with the fake2 backend" in texts(s)


def test_new_image_starts_a_new_segment(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    ask(s, picture((0, 0, 255), "blue.png"), "q2")
    assert fake["fake"].encoded == 2
    assert fake["fake"].prompts[-1] == "Question: q2 Answer:"
    assert "earlier turn stay in the chat but are not part of the prompt" in texts(s)
    assert len(s.history()) == 2  # the visible history keeps everything
    assert [line["text"].startswith("[image:") for line in s.transcript()].count(True) == 2


def test_truncation_is_announced(fake, picture):
    fake["fake"].context_length = 4 + 3 + 12  # image tokens + answer + 12 prompt words
    s = ChatSession()
    for q in ["q1", "q2", "q3"]:
        ask(s, picture(), q)
    assert fake["fake"].prompts[-1] == "Question: q2 Answer: w0 w1 w2 Question: q3 Answer:"
    assert "the 1 oldest turn about this image were left out" in texts(s)
    with pytest.raises(ChatError, match="too long"):
        ask(s, None, "a question that is far too long for this tiny context")
    assert len(s.history()) == 3


def test_budget_uses_the_backends_image_token_count(fake, picture):
    backend = fake["fake"]  # caches 4 "patches" per image but tells the LM sees 10 image tokens
    backend.num_image_tokens, backend.context_length = 10, 10 + 3 + 12
    s = ChatSession()
    for q in ["q1", "q2", "q3"]:
        ask(s, picture(), q)
    assert backend.prompts[-1] == "Question: q2 Answer: w0 w1 w2 Question: q3 Answer:"


def test_long_question_is_capped_with_a_message(fake, picture):
    s = ChatSession()
    ask(s, picture(), "why " * 300, max_new_tokens=1)
    assert len(s.history()[0]["question"]) <= 500
    assert "I used only its first" in texts(s)


def test_bad_image_keeps_the_session(fake, picture, tmp_path):
    s = ChatSession()
    ask(s, picture(), "q1")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(ChatError, match="not an image"):
        ask(s, str(bad), "q2")
    ask(s, None, "q3")  # still on the first image, in the same segment
    assert [t["question"] for t in s.history()] == ["q1", "q3"]
    assert fake["fake"].prompts[-1].startswith("Question: q1 Answer:")


def test_backend_that_cannot_load(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    with pytest.raises(ChatError, match="could not be loaded .*weights not reachable offline"):
        ask(s, None, "q2", backend="broken")
    assert "Your chat is kept" in texts(s)
    ask(s, None, "q3")
    assert [t["question"] for t in s.history()] == ["q1", "q3"]


def test_stop_keeps_the_partial_answer(fake, picture):
    s = ChatSession()
    ask(s, picture(), "warm up")
    steps = s.ask(None, "long one", "fake", GenerationSettings(max_new_tokens=1000))
    for _ in steps:
        if s.pending is not None and len(s.pending.answer.split()) >= 5:
            assert s.stop()
            break
    assert list(steps)[-1] == "Stopped."
    turn = s.conversation.turns[-1]
    assert turn.stopped and 5 <= len(turn.answer.split()) < 1000
    assert s.history()[-1]["answer"] == turn.answer and not s.busy and s.stop_event is None
    assert chat_messages(s)[-1]["content"].endswith("_(stopped)_")
    ask(s, None, "after")
    assert s.history()[-1]["answer"] == "w0 w1 w2"


def test_stop_before_the_answer_begins(fake, picture):
    """Stop pressed while the image is still being read (or the backend loads): no answer is generated."""
    s = ChatSession()
    steps = s.ask(picture(), "what is it?", "fake", GenerationSettings(max_new_tokens=1000))
    assert next(steps) == "Looking at the image…" and s.pending is None
    assert s.stop()
    assert list(steps)[-1] == "Stopped."
    turn = s.conversation.turns[-1]
    assert turn.stopped and turn.answer == "" and fake["fake"].prompts == []
    assert chat_messages(s)[-1]["content"] == "_(stopped)_" and not s.busy and s.stop_event is None
    ask(s, None, "after")
    assert s.history()[-1]["answer"] == "w0 w1 w2"


def test_cancelled_request_keeps_the_partial_answer_and_stops_generation(fake, picture):
    s = ChatSession()
    ask(s, picture(), "warm up")
    fake["fake"].finished.clear()
    steps = s.ask(None, "long one", "fake", GenerationSettings(max_new_tokens=1000))
    for _ in range(6):
        next(steps)
    steps.close()  # what Gradio does when the client cancels the job
    assert fake["fake"].finished.is_set()
    assert s.conversation.turns[-1].stopped and s.conversation.turns[-1].answer.startswith("w0")
    assert not s.busy
    ask(s, None, "after")


def test_one_question_at_a_time_per_session(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    first = s.ask(None, "q2", "fake", GenerationSettings(max_new_tokens=100))
    next(first)
    with pytest.raises(ChatError, match="still answering"):
        ask(s, None, "q3")
    first.close()
    ask(s, None, "q4")


def test_generation_error_mid_stream(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    fake["fake"].fail_after = 2
    with pytest.raises(ChatError, match="out of memory"):
        ask(s, None, "q2", max_new_tokens=5)
    assert s.history()[-1]["answer"] == "w0 w1" and s.history()[-1]["question"] == "q2"  # partial kept
    fake["fake"].fail_after = 0
    with pytest.raises(ChatError):
        ask(s, None, "q3", max_new_tokens=5)
    assert len(s.history()) == 2  # nothing generated: no turn, but the question and error are in the chat
    assert "q3" in texts(s)
    fake["fake"].fail_after = None
    ask(s, None, "q4")
    assert s.history()[-1]["answer"] == "w0 w1 w2"


def test_regenerate_replaces_the_last_answer(fake, picture):
    s = ChatSession()
    with pytest.raises(ChatError, match="nothing|no answer"):
        list(s.regenerate("fake", GenerationSettings()))
    ask(s, picture(), "q1")
    ask(s, None, "q2", max_new_tokens=2)
    list(s.regenerate("fake", GenerationSettings(max_new_tokens=4)))
    assert (s.history()[-1]["question"], s.history()[-1]["answer"]) == ("q2", "w0 w1 w2 w3")
    assert len(s.history()) == 2


def test_reset_forgets_everything(fake, picture):
    s = ChatSession()
    ask(s, picture(), "q1")
    thumbs = list(s.thumbnails)
    s.reset()
    assert s.history() == [] and s.log == [] and s.image is None and s.embeds == {}
    assert not any(os.path.exists(t) for t in thumbs)
    with pytest.raises(ChatError, match="image first"):
        ask(s, None, "q2")


def test_streamed_updates_are_throttled(fake, picture, monkeypatch):
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.05)
    fake["fake"].delay = 0.002
    s = ChatSession()
    ask(s, picture(), "warm up", max_new_tokens=1)
    start = time.monotonic()
    steps = ask(s, None, "q", max_new_tokens=100)  # ~0.2 s of tokens
    elapsed = time.monotonic() - start
    assert steps.count("Answering…") <= 2 + elapsed / 0.05
    assert len(s.history()[-1]["answer"].split()) == 100


def test_ui_stream_clears_the_question_once(fake, picture):
    import gradio as gr

    s = ChatSession()
    out = list(stream_to_chat(s, s.ask(picture(), "q1", "fake", GenerationSettings(max_new_tokens=2))))
    assert all(o[0] is s for o in out)  # every update hands the session back to its gr.State (idle clock)
    out = [o[1:] for o in out]
    assert out[0][1] == "" and all(o[1] == gr.skip() for o in out[1:])
    assert out[-1][0][-1] == {"role": "assistant", "content": "w0 w1"}
    assert out[-1][3].startswith("w0 w1") and out[-1][4] == "w0 w1"  # announced whole, kept for Repeat
    out = [o[1:] for o in stream_to_chat(s, s.ask(None, " ", "fake", GenerationSettings()))]
    refused = (chat_messages(s), gr.skip(), "⚠️ Not answered: see the message in the chat.")
    assert len(out) == 1 and out[0][:3] == refused
    assert out[0][3].startswith("Not answered. Please type a question")  # the live region hears why
    assert chat_messages(s)[-1]["content"] == "⚠️ Please type a question about the image."
