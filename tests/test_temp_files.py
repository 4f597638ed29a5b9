"""Nothing of a user stays on disk: the real `python app.py` (tiny random BLIP-2), two gradio_client
sessions with uploads, then a reset and the app stopped with SIGTERM or Ctrl-C (SIGINT).

The app runs with $TMPDIR in the test's own folder, so everything it writes to the temp folder is seen.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageStat

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (220, 30, 30), (30, 30, 220)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tiny_blip2_dir: Path, tmp: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, TMPDIR=str(tmp), VQA_CHAT_BLIP2_MODEL=str(tiny_blip2_dir))
    env.pop("GRADIO_TEMP_DIR", None)  # the app picks its own
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend", "blip2"]
    with open(log, "w") as out:
        app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert app.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return app, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.3)
    app.kill()
    pytest.fail("the app did not start within 120 s")


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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_no_upload_or_thumbnail_outlives_a_reset_or_the_app(tiny_blip2_dir, tmp_path, stop):
    pictures, tmp = tmp_path / "pictures", tmp_path / "tmp"
    pictures.mkdir(), tmp.mkdir()
    Image.new("RGB", (64, 48), RED).save(pictures / "red.png")
    Image.new("RGB", (48, 64), BLUE).save(pictures / "blue.png")
    app, url = start_app(tiny_blip2_dir, tmp, tmp_path / "app.log")
    try:
        first, second = Client(url, verbose=False), Client(url, verbose=False)
        assert ask(first, pictures / "red.png") and ask(second, pictures / "blue.png")
        [private] = tmp.glob("vqa-chat-*")  # one folder for all the copies, only the app can read it
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        seen = colours_on_disk(tmp)
        assert any(near(c, RED) for c in seen) and any(near(c, BLUE) for c in seen)  # upload + thumbnail

        first.predict(api_name="/reset")  # a new chat: the first session's pictures are gone at once
        seen = colours_on_disk(tmp)
        assert not any(near(c, RED) for c in seen) and any(near(c, BLUE) for c in seen)
    finally:
        app.send_signal(stop)
        try:
            app.wait(timeout=60)
        except subprocess.TimeoutExpired:
            app.kill()
            pytest.fail("the app did not stop within 60 s of " + stop.name)
    assert not list(tmp.glob("vqa-chat-*")), (tmp_path / "app.log").read_text()
    # No file at all is left (Gradio leaves empty folders; onnxruntime's telemetry files are turned off).
    assert not [p for p in tmp.rglob("*") if not p.is_dir()]
