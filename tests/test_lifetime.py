"""Sessions end after the idle limit and free what they held; a returning user is told; memory is budgeted;
a question asked while the backend loads is in the chat at once. Through the real app where it matters."""

from __future__ import annotations

import threading
import time

import pytest
from apps import AppSetup
from fakes import FakeBackend
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from vqa_chat import backends
from vqa_chat.budget import Budget
from vqa_chat.chat import image_slot, session
from vqa_chat.chat.lifetime import Lifetime, idle_text
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ui.events import stream_to_chat
from vqa_chat.ui.page import AppConfig

IDLE_SECONDS = 2.0
pytestmark = pytest.mark.slow  # starts the app


@pytest.fixture(scope="module")
def slow_fake():
    return FakeBackend("fake", delay=0.25)  # 16 tokens take 4 s: longer than the idle limit


@pytest.fixture(scope="module")
def app_setup(slow_fake):
    """The app in this process on the slow fake backend, sessions ending after IDLE_SECONDS."""
    return AppSetup(AppConfig(backend="fake", idle_minutes=IDLE_SECONDS / 60), backends={"fake": slow_fake})


@pytest.fixture
def picture(tmp_path):
    def make(color=(200, 30, 30), name="photo.png"):
        path = tmp_path / name
        Image.new("RGB", (64, 48), color).save(path)
        return str(path)

    return make


@pytest.fixture
def photo(picture):
    return picture()


def files_in(folder) -> set:
    """Files holding something (Gradio leaves an empty temp file per upload: no user data)."""
    return {p for p in folder.rglob("*") if p.is_file() and p.stat().st_size}


def wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_an_idle_session_ends_and_frees_its_memory_and_files(app, photo, app_temp_dir):
    before = files_in(app_temp_dir)
    slots_before = len(image_slot.BUDGET.sizes)
    client = Client(app.url, verbose=False)
    assert client.predict(handle_file(photo), "q", "fake", 2, api_name="/ask") == "w0 w1"
    made = files_in(app_temp_dir) - before
    assert len(made) >= 3  # the upload (scrubbed), the chat's thumbnail, the picture's lossless copy
    assert len(image_slot.BUDGET.sizes) == slots_before + 1
    # Gradio checks every second; the session is gone within the limit + 2 s
    assert wait_until(lambda: not (files_in(app_temp_dir) & made), IDLE_SECONDS + 4)
    assert len(image_slot.BUDGET.sizes) == slots_before  # picture, features and facts freed


def test_a_returning_user_is_told_and_can_go_on_at_once(app, photo):
    client = Client(app.url, verbose=False)
    assert client.predict(handle_file(photo), "q", "fake", 2, api_name="/ask") == "w0 w1"
    time.sleep(IDLE_SECONDS + 2.5)
    message = f"This chat ended after {idle_text(IDLE_SECONDS)} without use; add the photo again to go on."
    with pytest.raises(AppError, match="This chat ended after 2 seconds without use"):
        client.predict(None, "and the colour?", "fake", 2, api_name="/ask")  # not about a photo that is gone
    assert client.predict(api_name="/chat")[-1] == {"role": "assistant", "text": message}
    assert client.predict(handle_file(photo), "again", "fake", 2, api_name="/ask") == "w0 w1"
    assert [t["question"] for t in client.predict(api_name="/history")] == ["again"]


def test_a_turn_streaming_when_the_limit_passes_is_not_cut(app, photo):
    client = Client(app.url, verbose=False)
    answer = client.predict(handle_file(photo), "long", "fake", 16, api_name="/ask")  # 4 s > 2 s limit
    assert answer == " ".join(f"w{i}" for i in range(16))
    assert client.predict(None, "and then?", "fake", 2, api_name="/ask") == "w0 w1"  # same session and photo
    assert len(client.predict(api_name="/history")) == 2


# --- the pieces, without the app ---------------------------------------------------------------------------


def test_expire_leaves_a_busy_session_alone_and_remembers_the_ended():
    live = Lifetime(60, remember=2)
    s = live.bind(ChatSession(), "a")
    s.busy = True
    live.expire(s)
    assert "a" not in live.ended  # answering: its next update stores it again
    s.busy = False
    live.expire(s)
    assert "a" in live.ended
    fresh = live.bind(ChatSession(), "a")  # Gradio's new copy for the same browser tab / client
    assert fresh.ended_message == "This chat ended after 1 minute without use; add the photo again to go on."
    for name in "bcd":
        live.expire(live.bind(ChatSession(), name))
    assert list(live.ended) == ["c", "d"]  # a bounded memory of ended sessions


def test_an_evicted_session_still_answers_alike_only_re_encoding(fake, picture, monkeypatch):
    budget = Budget(limit_bytes=64 * 48 * 3 + 200)  # room for one picture and its features
    monkeypatch.setattr(image_slot, "BUDGET", budget)
    settings = GenerationSettings(max_new_tokens=2)
    a, b = ChatSession(), ChatSession()
    list(a.ask(picture((10, 200, 10)), "q", "fake", settings))
    pixels = a.image.tobytes()
    encoded = fake["fake"].encoded
    list(b.ask(picture((10, 10, 200), "b.png"), "q", "fake", settings))  # a's slot is dropped for b's
    assert a.files.slot._image is None and a.embeds == {}
    assert budget.total <= budget.limit
    list(a.ask(None, "again", "fake", settings))
    assert fake["fake"].encoded == encoded + 2  # b's picture, then a's again
    assert a.image.tobytes() == pixels  # read back from its lossless copy: the same pixels
    assert [t["answer"] for t in a.history()] == ["w0 w1", "w0 w1"]


def test_a_question_asked_while_the_backend_loads_is_shown_at_once(picture, install, monkeypatch):
    released = threading.Event()
    backend = FakeBackend("slowload")

    def load(options):
        released.wait(10)
        return backend

    monkeypatch.setitem(backends.REGISTRY, "slowload", backends.Entry(load))
    install()  # what this test loads goes with it
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)
    s = ChatSession()
    asked = s.ask(picture(), "what is it?", "slowload", GenerationSettings(max_new_tokens=2))
    steps = stream_to_chat(s, asked)
    first = next(steps)  # before the load finishes
    chat, status, announce = first[1], first[3], first[4]
    assert chat[-2] == {"role": "user", "content": "what is it?"}
    assert "Loading the slowload backend" in chat[-1]["content"] and status.startswith("Loading the")
    assert "Loading the slowload backend" in announce  # the live region says why nothing happens yet
    threading.Timer(0.3, released.set).start()
    *_, last = steps
    questions = [m for m in last[1] if m["role"] == "user" and m["content"] == "what is it?"]
    assert len(questions) == 1 and last[1][-1] == {"role": "assistant", "content": "w0 w1"}
