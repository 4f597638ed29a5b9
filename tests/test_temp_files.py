"""Nothing of a user stays on disk: the real `python app.py` (tiny random BLIP-2), two gradio_client
sessions with uploads, then a reset and the app stopped with SIGTERM or Ctrl-C (SIGINT).

The app runs with $TMPDIR in the test's own folder, so everything it writes to the temp folder is seen.
"""

from __future__ import annotations

import signal
import stat
import subprocess
from pathlib import Path

import pytest
from apps import AppSetup
from gradio_client import Client, handle_file
from PIL import Image, ImageStat

RED, BLUE = (220, 30, 30), (30, 30, 220)
pytestmark = pytest.mark.slow  # starts the app, twice


@pytest.fixture(scope="module", params=[signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def stop(request) -> signal.Signals:
    """How the test stops the app."""
    return request.param


@pytest.fixture(scope="module")
def app_setup(stop, tiny_blip2_dir, tmp_path_factory):
    """`python app.py --backend blip2` (the tiny BLIP-2) in a child process, its $TMPDIR a folder of its own
    (one app per way of stopping it)."""
    env = {"TMPDIR": str(tmp_path_factory.mktemp("tmp")), "VQA_CHAT_BLIP2_MODEL": str(tiny_blip2_dir)}
    env["GRADIO_TEMP_DIR"] = None  # the app picks its own
    return AppSetup(env=env, process=["--backend", "blip2"])


def colours_on_disk(folder: Path) -> list[tuple[int, int, int]]:
    """The mean colour of every picture under `folder`."""
    found = []
    for path in folder.rglob("*"):
        try:
            with Image.open(path) as im:
                found.append(tuple(ImageStat.Stat(im.convert("RGB")).mean))
        except (OSError, ValueError):
            continue
    return found


def near(colour, target) -> bool:
    return all(abs(a - b) < 20 for a, b in zip(colour, target))


def ask(client: Client, image: Path) -> str:
    return client.predict(handle_file(str(image)), "What is it?", "blip2", 2, api_name="/ask")


def test_no_upload_or_thumbnail_outlives_a_reset_or_the_app(app, app_setup, stop, tmp_path):
    pictures, tmp = tmp_path / "pictures", Path(app_setup.env["TMPDIR"])
    pictures.mkdir()
    Image.new("RGB", (64, 48), RED).save(pictures / "red.png")
    Image.new("RGB", (48, 64), BLUE).save(pictures / "blue.png")
    try:
        first, second = Client(app.url, verbose=False), Client(app.url, verbose=False)
        assert ask(first, pictures / "red.png") and ask(second, pictures / "blue.png")
        [private] = tmp.glob("vqa-chat-*")  # one folder for all the copies, only the app can read it
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        seen = colours_on_disk(tmp)
        assert any(near(c, RED) for c in seen) and any(near(c, BLUE) for c in seen)  # upload + thumbnail

        first.predict(api_name="/reset")  # a new chat: the first session's pictures are gone at once
        seen = colours_on_disk(tmp)
        assert not any(near(c, RED) for c in seen) and any(near(c, BLUE) for c in seen)
    finally:
        app.process.send_signal(stop)
        try:
            app.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not stop within 60 s of " + stop.name)  # the fixture kills it
    assert not list(tmp.glob("vqa-chat-*")), app.log.read_text()
    # No file at all is left (Gradio leaves empty folders; onnxruntime's telemetry files are turned off).
    assert not [p for p in tmp.rglob("*") if not p.is_dir()]
