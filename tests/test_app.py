"""The real app on a tiny random BLIP-2, launched on loopback and driven by gradio_client.

Each `Client` is its own session. Nothing is downloaded: the BLIP-2 backend loads the tiny model from the
`tiny_blip2_dir` fixture through $VQA_CHAT_BLIP2_MODEL.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from fakes import exif_photo, png_header_only, qr_photo
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from vqa_chat.backends import Entry, get_backend

LONG = 200  # max_new_tokens for answers long enough to stop halfway (the tiny model never emits EOS)
pytestmark = pytest.mark.slow  # starts the app


def cannot_load(options):
    raise OSError("the weights are not reachable offline")


@pytest.fixture(scope="module")
def app_setup(app_setup):
    """conftest's app (in this process, the tiny BLIP-2), and a backend that cannot load."""
    return replace(app_setup, entries={"broken": Entry(cannot_load)})


@pytest.fixture
def client(app):
    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Odd and bad uploads, made with PIL."""
    d = tmp_path_factory.mktemp("uploads")
    Image.new("RGB", (64, 48), (220, 40, 40)).save(d / "red.png")
    Image.new("RGB", (48, 64), (40, 40, 220)).save(d / "blue.png")
    Image.new("RGB", (400, 300), (10, 200, 10)).save(d / "full.jpg")
    data = (d / "full.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "notes.png").write_text("this is text, not a picture\n" * 10)
    (d / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    Image.new("RGB", (3000, 2000), (90, 90, 90)).save(d / "huge.png")
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(d / "deep.png")
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(d / "rgba.png")
    Image.new("RGB", (40, 40), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "pal.png")
    Image.new("L", (40, 40), 128).save(d / "gray.png")
    exif_photo(d, 6)  # rot6.jpg
    return d


def ask(client, image, question, backend="blip2", max_new_tokens=4) -> str:
    file = handle_file(str(image)) if image is not None else None
    return client.predict(file, question, backend, max_new_tokens, api_name="/ask")


def chat_text(client) -> str:
    return "\n".join(line["text"] for line in client.predict(api_name="/chat"))


def test_page_has_labelled_controls(app):
    labels = {c.get("props", {}).get("label") for c in app.demo.config["components"]}
    values = {str(c.get("props", {}).get("value")) for c in app.demo.config["components"]}
    assert {"Image", "Question", "Backend", "Chat"} <= labels
    assert {"Send", "Stop", "Regenerate", "New chat"} <= values


def test_two_sessions_two_turns_isolated(client, app, images):
    other = Client(app.url, verbose=False)
    a1 = ask(client, images / "red.png", "What color is it?")
    b1 = ask(other, images / "blue.png", "What shape is it?")
    jobs = [  # second turns at the same time
        client.submit(None, "Is it big?", "blip2", 4, api_name="/ask"),
        other.submit(None, "Where is it?", "blip2", 4, api_name="/ask"),
    ]
    a2, b2 = (job.result(timeout=60) for job in jobs)
    assert all(isinstance(a, str) and a.strip() for a in (a1, a2, b1, b2))
    said = [(h["question"], h["said"], h["backend"]) for h in client.predict(api_name="/history")]
    assert said == [("What color is it?", a1, "blip2"), ("Is it big?", a2, "blip2")]
    said = [(h["question"], h["said"], h["backend"]) for h in other.predict(api_name="/history")]
    assert said == [("What shape is it?", b1, "blip2"), ("Where is it?", b2, "blip2")]
    assert jobs[0].outputs()[-1] == a2  # the streamed outputs end with the returned answer


def wait_for_text(job, timeout=60):
    start = time.monotonic()
    while not any(o.strip() for o in job.outputs() if isinstance(o, str)):
        assert time.monotonic() - start < timeout and not job.done(), "no streamed text"
        time.sleep(0.005)


def test_stop_keeps_the_partial_answer(client, app, images):
    reference = Client(app.url, verbose=False)  # same image and question: same greedy answer
    ask(reference, images / "red.png", "Describe it.", max_new_tokens=LONG)
    full = reference.predict(api_name="/history")[-1]["answer"]  # the model's text, without the hedge
    job = client.submit(handle_file(str(images / "red.png")), "Describe it.", "blip2", LONG, api_name="/ask")
    wait_for_text(job)
    assert client.predict(api_name="/stop") == "Stopping."
    partial = job.result(timeout=60)
    assert partial and len(partial) < len(full) and full.startswith(partial)
    assert client.predict(api_name="/history")[-1]["answer"] == partial
    assert chat_text(client).endswith("(stopped)")
    assert client.predict(api_name="/stop") == "Nothing to stop."
    assert ask(client, None, "And now?").strip()  # the session goes on


def test_cancelled_job_keeps_the_partial_answer(client, images):
    ask(client, images / "red.png", "What is it?", max_new_tokens=1)
    job = client.submit(None, "Tell me more.", "blip2", LONG, api_name="/ask")
    wait_for_text(job)
    job.cancel()
    start = time.monotonic()
    while not chat_text(client).endswith("(stopped)"):  # Gradio closes the generator soon after
        assert time.monotonic() - start < 30
        time.sleep(0.05)
    history = client.predict(api_name="/history")
    assert len(history) == 2 and history[-1]["answer"]
    assert ask(client, None, "Still there?").strip()
    assert len(client.predict(api_name="/history")) == 3


BAD_INPUTS = [  # (image file or None, question, backend, words of the message)
    (None, "What is it?", "blip2", "add an image first"),
    ("truncated.jpg", "What is it?", "blip2", "damaged or incomplete"),
    ("notes.png", "What is it?", "blip2", "not an image"),
    ("bomb.png", "What is it?", "blip2", "too many pixels"),
    ("red.png", "", "blip2", "type a question"),
    ("red.png", "   \n\t", "blip2", "type a question"),
    ("red.png", "What is it?", "broken", "could not be loaded"),
]


def test_bad_input_gets_a_message_and_the_session_goes_on(client, images):
    for answered, (image, question, backend, message) in enumerate(BAD_INPUTS, start=1):
        with pytest.raises(AppError, match=message):
            ask(client, images / image if image else None, question, backend)
        assert message in chat_text(client)  # also in the visible chat
        assert ask(client, images / "red.png", "And now?").strip()
        assert len(client.predict(api_name="/history")) == answered  # history intact, nothing lost


ODD_IMAGES = [  # (file, words of the note in the chat, or None)
    ("huge.png", "scaled it to 1024×683"),
    ("anim.gif", "first frame"),
    ("cmyk.jpg", None),
    ("deep.png", None),
    ("rgba.png", "white background"),
    ("pal.png", None),
    ("gray.png", None),
    ("rot6.jpg", "upright"),
]


def test_odd_images_are_answered(client, images):
    for i, (name, note) in enumerate(ODD_IMAGES):
        assert ask(client, images / name, "What is it?").strip()
        text = chat_text(client)
        assert text.count("[image:") == i + 1
        if note:
            assert note in text
    assert "[image: Your image (20×40 pixels)]" in chat_text(client)  # the rotated photo, upright
    assert len(client.predict(api_name="/history")) == len(ODD_IMAGES)


def test_long_question_is_capped(client, images):
    assert ask(client, images / "red.png", "the " * 300).strip()  # "the" is one token of the tiny model
    assert len(client.predict(api_name="/history")[0]["question"]) <= 500
    assert "I used only its first" in chat_text(client)


def test_reset_starts_a_new_chat(client, images):
    ask(client, images / "red.png", "What is it?")
    assert client.predict(api_name="/reset") == "New chat started."
    assert client.predict(api_name="/history") == []
    with pytest.raises(AppError, match="add an image first"):
        ask(client, None, "What about now?")


def test_facts_and_describe_endpoints(app, images):
    client = Client(app.url, verbose=False)
    facts = client.predict(handle_file(str(images / "red.png")), api_name="/facts")
    assert {"labels", "text", "people", "colours", "light", "blurry", "codes", "seconds"} <= set(facts)
    assert facts["colours"][0][0] == "red" and facts["people"] == [] and len(facts["labels"]) == 5
    described = client.predict(None, "blip2", api_name="/describe")  # about the image /facts was given
    turn = client.predict(api_name="/history")[-1]
    assert described.strip() and turn["said"] == described and turn["source"] == "model"
    assert client.predict(api_name="/chat")[-1]["text"] == described  # a turn of the chat, like the button


def test_photo_text_reaches_the_api_exactly_as_read(client, tmp_path, monkeypatch):
    """A QR code's payload, markup and all, comes back plain from /ask, /chat and /history, like the question
    typed; a long one is shortened in the answer and whole in /facts."""
    monkeypatch.setattr(get_backend("blip2"), "picture_in_domain", lambda *args: False)  # photo facts answer
    payload = "[tap me](javascript:alert(1)) <script>alert(1)</script>\n# *not* a heading | `c` \\ $$x$$ &lt;"
    question = "Scan the *QR code* <b>now</b> & [tell](me)"
    said = ask(client, qr_photo(tmp_path / "qr.png", payload), question)
    assert said == f'A QR code: "{payload}".'
    turn = client.predict(api_name="/history")[-1]
    assert (turn["question"], turn["said"], turn["source"]) == (question, said, "photo facts")
    assert [line["text"] for line in client.predict(api_name="/chat")][-2:] == [question, said]

    long = "https://example.com/?q=" + "[a](b) <i>*c*</i> " * 45  # 833 characters (OpenCV's reader misses
    # some codes of this size; this one it reads at any scale)
    said = ask(client, qr_photo(tmp_path / "long.png", long), "Is there a QR code?")
    assert said == f'A QR code: "{long[:300]}…" (the first 300 of {len(long):,} characters).'
    assert client.predict(None, api_name="/facts")["codes"] == [{"kind": "QR code", "data": long}]
