"""Privacy by default: metadata stripped from uploads first, no logs unless asked, delete my session."""

from __future__ import annotations

import json
import os

import pytest
from fakes import exif_photo
from PIL import Image

from vqa_chat.chat import privacy
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=2)


@pytest.fixture
def upload(tmp_path, monkeypatch):
    """A photo with GPS and camera EXIF, placed where Gradio keeps uploads."""
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    (cache / "abc").mkdir(parents=True)
    path = exif_photo(cache / "abc", 6)
    assert Image.open(path).getexif().get_ifd(0x8825)  # it has GPS data to start with
    return path


@pytest.fixture(autouse=True)
def no_log():
    privacy.configure_log(None)
    yield
    privacy.configure_log(None)


def test_gps_and_exif_are_gone_everywhere_the_image_goes(fake, upload):
    s = ChatSession()
    list(s.ask(str(upload), "What is it?", "fake", SETTINGS))
    assert not s.image.info and not s.image.getexif()  # what the models see
    thumb = next(item.image for item in s.log if getattr(item, "image", None))
    assert not Image.open(thumb).getexif()  # what the chat shows
    on_disk = Image.open(upload)  # Gradio's copy of the upload was rewritten with clean pixels
    assert not on_disk.getexif() and on_disk.size == (20, 40)


def test_files_outside_the_upload_cache_are_never_touched(fake, tmp_path):
    path = exif_photo(tmp_path, 1)
    before = path.read_bytes()
    list(ChatSession().ask(str(path), "What is it?", "fake", SETTINGS))
    assert path.read_bytes() == before


def test_nothing_is_logged_by_default(fake, upload, tmp_path, caplog):
    caplog.set_level("DEBUG")
    before = set(tmp_path.rglob("*"))
    list(ChatSession().ask(str(upload), "Where do I live?", "fake", SETTINGS))
    new = {p for p in set(tmp_path.rglob("*")) - before if "gradio" not in p.parts}
    assert not new and privacy.log_dir() is None
    assert "Where do I live?" not in caplog.text


def test_log_dir_gets_jsonl_and_clean_images(fake, upload, tmp_path):
    privacy.configure_log(tmp_path / "logs")
    s = ChatSession()
    list(s.ask(str(upload), "What is it?", "fake", SETTINGS))
    list(s.ask(None, "And?", "fake", SETTINGS))
    lines = [json.loads(x) for x in (tmp_path / "logs" / "chat.jsonl").read_text().splitlines()]
    assert [x["question"] for x in lines] == ["What is it?", "And?"] and lines[0]["answer"] == "w0 w1"
    assert lines[0]["session"] == lines[1]["session"] and lines[0]["image"] == lines[1]["image"]
    logged = Image.open(tmp_path / "logs" / lines[0]["image"])
    assert not logged.getexif() and logged.size == (20, 40)


def test_delete_my_session_drops_images_features_history_and_files(fake, upload):
    s = ChatSession()
    list(s.ask(str(upload), "What is it?", "fake", SETTINGS))
    files = list(s.thumbnails) + list(s.uploads)
    assert files and s.embeds and s.history()
    s.delete()
    assert s.image is None and not s.embeds and not s.kv and s.history() == [] and s.log == []
    assert not any(os.path.exists(f) for f in files)


def test_app_logs_only_with_log_dir(tmp_path):
    import app

    assert app.parse_args([]).log_dir is None  # the default: no log at all
    assert app.parse_args(["--log-dir", str(tmp_path)]).log_dir == str(tmp_path)


# -- uploads shared by sessions: Gradio names an upload by its content's hash, so two visitors sending the
# -- same photo (or clicking the same example) get the same file

def test_an_upload_two_sessions_share_goes_with_the_last_of_them(fake, upload):
    a, b = ChatSession(), ChatSession()
    list(a.ask(str(upload), "What is it?", "fake", SETTINGS))
    list(b.ask(str(upload), "What is it?", "fake", SETTINGS))
    a.delete()
    assert upload.exists()  # b still holds it
    c = ChatSession()
    list(c.ask(str(upload), "And now?", "fake", SETTINGS))  # a third visitor can still open it
    b.delete()
    assert upload.exists()  # c holds it too
    del c  # a session Gradio drops without telling us lets go of it as well (its finaliser)
    assert not upload.exists()


def test_an_upload_sent_again_is_left_for_the_session_still_queued_to_read_it(fake, upload, tmp_path):
    a = ChatSession()
    list(a.ask(str(upload), "What is it?", "fake", SETTINGS))
    again = exif_photo(tmp_path, 6)  # visitor b uploads the same photo: Gradio moves it onto the same path
    os.replace(again, upload)
    a.delete()  # a was the only holder, but b's question is still waiting in the queue
    b = ChatSession()
    list(b.ask(str(upload), "What is it?", "fake", SETTINGS))
    assert b.image is not None and not Image.open(upload).getexif()
    b.delete()
    assert not upload.exists()  # the last holder, nothing newer: gone


def test_examples_gradio_keeps_are_never_rewritten_or_deleted(fake, upload):
    before = upload.read_bytes()
    privacy.keep_files([upload])
    try:
        s = ChatSession()
        list(s.ask(str(upload), "What is it?", "fake", SETTINGS))
        s.delete()
        assert upload.read_bytes() == before
    finally:
        privacy._kept.clear()


def test_readers_never_see_half_a_rewritten_upload(upload):
    import threading

    from vqa_chat.chat.images import load_image

    clean = Image.open(upload).convert("RGB")
    done, errors = threading.Event(), []

    def rewrite():
        while not done.is_set():
            privacy.scrub_upload(upload, clean)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            try:
                load_image(str(upload))
            except Exception as e:  # an empty or truncated file
                errors.append(repr(e))
    finally:
        done.set()
        writer.join()
    assert errors == [] and sorted(p.name for p in upload.parent.iterdir()) == [upload.name]
