"""The vllm backend against a real HTTP server on loopback that speaks vLLM's OpenAI-compatible protocol
(tests/fake_vllm.py: sockets, HTTP/1.1, server-sent events), not a mock object."""

from __future__ import annotations

import base64
import io
import threading

import pytest
from fake_vllm import FakeVLLM
from PIL import Image

from vqa_chat.backends.base import ModelLoadError
from vqa_chat.backends.vllm import TOKENIZE_IN_FLIGHT, VLLMBackend
from vqa_chat.chat import session
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import BackendOptions, BusyError, GenerationSettings


@pytest.fixture
def server():
    s = FakeVLLM()
    yield s
    s.close()


@pytest.fixture
def backend(server):
    return VLLMBackend.load(BackendOptions(model=server.url))


@pytest.fixture
def picture(tmp_path):
    def make(color, name):
        path = tmp_path / name
        Image.new("RGB", (48, 32), color).save(path)
        return str(path)

    return make


def test_load_reads_the_model_card_and_tokenizes_on_the_server(backend):
    assert backend.model_id == "Salesforce/blip2-opt-2.7b" and backend.context_length == 2048
    assert backend.count_tokens("Question: what is it? Answer:") == 6  # the server's count: 5 words + BOS


def test_token_counts_are_sent_together(backend, server):
    """Fitting a long conversation counts several prompts: their /tokenize calls overlap (a few in flight),
    each count is the server's, in order; a server without /tokenize gives the safe over-estimate."""
    server.tokenize_delay = 0.2
    texts = [" ".join(["word"] * n) for n in range(1, 9)]
    assert backend.count_tokens_batch(texts) == [n + 1 for n in range(1, 9)]
    assert sorted(server.tokenized) == sorted(texts)
    assert 1 < server.most_tokenizing <= TOKENIZE_IN_FLIGHT
    backend.root = backend.root + "/nothing-here"  # 404: no /tokenize
    assert backend.count_tokens_batch(["abcd", "abcdefgh"]) == [3, 5]  # bytes / 2 + 1
    assert backend.count_tokens("abcd") == 3


def test_a_long_conversation_is_fitted_with_concurrent_counts(backend, server, picture, install, monkeypatch):
    """The session fits its prompt with count_tokens_batch: once the whole conversation no longer fits, the
    shorter prompts are counted in one batch (their calls overlap), not one call after another."""
    install(vllm=backend)
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)
    monkeypatch.setattr(backend, "context_length", 32 + 8 + 24)  # image, answer, 24 words of prompt
    server.tokenize_delay = 0.05
    chat, settings = ChatSession(), GenerationSettings(max_new_tokens=8)
    list(chat.ask(picture((40, 40, 220), "blue.png"), "what colour is this picture?", "vllm", settings))
    for i in range(5):
        list(chat.ask(None, f"and what about question number {i}?", "vllm", settings))
    last = server.requests[-1]["messages"][0]["content"][1]["text"]
    assert last.count("Question:") == 2  # one past turn fits beside the question
    assert server.most_tokenizing > 1
    # per turn: the whole prompt; from the third turn on it does not fit, and the shorter ones follow together
    assert len(server.tokenized) == 1 + 1 + (1 + 2) + (1 + 3) + (1 + 4) + (1 + 5)


def test_unreachable_server_is_a_clear_load_error(server):
    url = server.url
    server.close()
    with pytest.raises(ModelLoadError, match="Could not reach the vLLM server"):
        VLLMBackend.load(BackendOptions(model=url))


def test_stream_sends_image_and_prompt_and_reads_sse(backend, server):
    image = backend.encode_image(Image.new("RGB", (20, 20), (40, 40, 220)))
    prompt = "Question: what color is it? Answer:"
    pieces = list(backend.stream(image, prompt, GenerationSettings(max_new_tokens=10)))
    assert pieces == ["blue", " 1"]
    sent = server.requests[-1]
    assert sent["stream"] is True and sent["max_tokens"] == 10 and sent["temperature"] == 0.0
    text = [p for p in sent["messages"][0]["content"] if p["type"] == "text"][0]["text"]
    url = [p for p in sent["messages"][0]["content"] if p["type"] == "image_url"][0]["image_url"]["url"]
    assert text == prompt and url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (20, 20)
    plain = backend.request_body(image, prompt, GenerationSettings(plain=True))
    assert "repetition_penalty" not in plain and "repetition_penalty" in sent


def test_stop_closes_the_connection(backend, server):
    server.delay = 0.01
    image = backend.encode_image(Image.new("RGB", (8, 8), "white"))
    stop = threading.Event()
    got = []
    settings = GenerationSettings(max_new_tokens=300)
    for piece in backend.stream(image, "Question: long? Answer:", settings, stop):
        got.append(piece)
        if len(got) == 3:
            stop.set()
    assert len(got) <= 4
    for _ in range(100):  # the server notices the closed connection at its next write
        if server.disconnects:
            break
        threading.Event().wait(0.02)
    assert server.disconnects == 1


def test_busy_and_mid_stream_errors_are_readable(backend):
    image = backend.encode_image(Image.new("RGB", (8, 8), "white"))
    with pytest.raises(BusyError, match="busy"):
        list(backend.stream(image, "Question: busy? Answer:", GenerationSettings()))
    with pytest.raises(RuntimeError, match="out of memory"):
        list(backend.stream(image, "Question: crash? Answer:", GenerationSettings()))


def test_sessions_keep_their_own_conversations(backend, server, picture, install, monkeypatch):
    install(vllm=backend)
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)
    red, blue = ChatSession(), ChatSession()
    settings = GenerationSettings(max_new_tokens=10)
    for s, color in ((red, (220, 40, 40)), (blue, (40, 40, 220))):
        list(s.ask(picture(color, f"{color[0]}.png"), "what is it?", "vllm", settings))
    for s in (red, blue):
        list(s.ask(None, "and now?", "vllm", settings))
    assert [t["answer"] for t in red.history()] == ["red 1", "red 2"]
    assert [t["answer"] for t in blue.history()] == ["blue 1", "blue 2"]
    last = server.requests[-1]["messages"][0]["content"][1]["text"]
    assert last == "Question: what is it? Answer: blue 1 Question: and now? Answer:"  # kept by the app
    with pytest.raises(ChatError, match="busy"):
        list(red.ask(None, "busy?", "vllm", settings))
    with pytest.raises(ChatError, match="out of memory"):
        list(red.ask(None, "crash?", "vllm", settings))
    assert (red.history()[-1]["question"], red.history()[-1]["answer"]) == ("crash?", "red 3")  # partial kept
    list(red.ask(None, "still there?", "vllm", settings))  # the session answers normally afterwards
    assert red.history()[-1]["answer"] == "red 4"
