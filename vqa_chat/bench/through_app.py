"""The benchmark's "app" section: the chat through the real app, against the same questions asked directly.

The app is `app.py` with `make run`'s defaults, started in a child process on loopback (its own process: the
bench's loaded backend and this process's threads stay out of it), driven by gradio_client, one `Client`
(one chat session) per simulated user, each about its own easy-VQA image. Measured:
- one session's short follow-up answers, one at a time: seconds per /ask, end to end (queue, events,
  streaming, the chat's checks after the answer);
- N sessions asking a follow-up each at the same moment: wall seconds until the last answer is back;
- the same follow-ups of session 0 asked directly: `backend.stream` with the session's prefix cache, in
  this process (the model's own time, without the app).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.chat.images import load_image
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENS = GenerationSettings().max_new_tokens  # the app's default answer length cap


def start_app(args: list[str], log: Path, env: dict | None = None, timeout: float = 180.0):
    """app.py with `args` on a free loopback port, its output in `log`; returns (process, url) once it
    accepts connections (also scripts/load_test.py's app)."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log, "w") as out:  # the child keeps its own copy of the file descriptor
        app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited: see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return app, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.3)
    app.kill()
    raise RuntimeError(f"the app did not start within {timeout:.0f} s: see {log}")


def questions(conv: list[dict], n: int) -> list[str]:
    """The first `n` follow-ups of a conversation, going round its questions (after the first) again."""
    later = [r["question"] for r in conv[1:]] or [conv[0]["question"]]
    return [later[i % len(later)] for i in range(n)]


def through_app(model: str | None, convs: list[list[dict]], sessions: int, rounds: int) -> dict:
    """Seconds per short answer of one session alone ("one", 2 per round) and wall seconds of `sessions`
    sessions answering one follow-up each at once ("many", 1 per round), through the app."""
    from gradio_client import Client, handle_file

    log = Path(tempfile.mkdtemp(prefix="vqa-bench-app-")) / "app.log"
    app, url = start_app(["--backend", "custom", *(["--custom-model", model] if model else [])], log)
    try:
        clients = [Client(url, verbose=False) for _ in range(sessions)]
        conv = [convs[i % len(convs)] for i in range(sessions)]
        asked = [0] * sessions
        follow = [questions(c, 3 * rounds + 1) for c in conv]

        def ask(i: int, first: bool = False) -> float:
            image = handle_file(conv[i][0]["image"]) if first else None
            question = conv[i][0]["question"] if first else follow[i][asked[i]]
            asked[i] += 0 if first else 1
            start = time.perf_counter()
            clients[i].predict(image, question, "custom", DEFAULT_TOKENS, api_name="/ask")
            return time.perf_counter() - start

        for i in range(sessions):  # each session: its image, encoded, and a first question
            ask(i, first=True)
        one, many = [], []
        for _ in range(rounds):
            one += [ask(0), ask(0)]
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(sessions)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            many.append(time.perf_counter() - start)
        return {"one": one, "many": many, "session0": [conv[0][0]["question"], *follow[0][: asked[0]]]}
    except Exception as e:
        raise RuntimeError(f"{e} (app log: {log})") from e
    finally:
        app.terminate()
        app.wait(30)


def direct(backend, conv: list[dict], asked: list[str]) -> list[float]:
    """Seconds per answer of the follow-ups `asked[1:]` (after the first question `asked[0]`) about `conv`'s
    image, asked directly with `backend.stream` and one prefix cache, as the app's session asks them."""
    settings = GenerationSettings()
    patches, state = backend.encode_image(load_image(conv[0]["image"])), backend.new_state()
    turns, times = [], []
    for k, q in enumerate(asked):
        start = time.perf_counter()
        answer = "".join(backend.stream(patches, format_prompt(turns, q), settings, state=state)).strip()
        if k:
            times.append(time.perf_counter() - start)
        turns.append(Turn(question=q, answer=answer))
    return times


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
