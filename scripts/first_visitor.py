"""The first visitor's wait: start `app.py`, ask as soon as the page answers, time the first answer.

    python scripts/first_visitor.py                 # cold kernel cache (a new, empty inductor cache)
    python scripts/first_visitor.py --warm          # the machine's usual inductor cache

Prints seconds from the start of the process to "vqa-chat: ready" (the default backend loaded in the
background, decode kernels compiled), and the first visitor's wait: from pressing Enter (one /ask through
gradio_client, sent the moment the port accepts connections) to the first streamed text and to the whole
answer. The SmolLM2 conversion cache ($VQA_CHAT_CACHE) is left as it is: "cold" is the kernel cache only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vqa_chat.bench import through_app  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/first_visitor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--warm", action="store_true", help="keep the usual inductor cache")
    p.add_argument("--image", default=str(ROOT / "assets" / "examples" / "blue_triangle.png"))
    p.add_argument("--question", default="What color is the shape?")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="first-visitor-"))
    env = dict(os.environ)
    if not args.warm:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor")  # empty: every kernel compiles
    start = time.monotonic()
    app, url = through_app.start_app(["--backend", "custom"], work / "app.log", env)
    listening = time.monotonic() - start
    ready: list[float] = []

    def watch() -> None:  # the app's own "ready" line, as `make run` shows it
        while not ready and app.poll() is None:
            if "vqa-chat: ready" in (work / "app.log").read_text():
                ready.append(time.monotonic() - start)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    try:
        client = Client(url, verbose=False)  # the page has loaded
        asked = time.monotonic()  # Enter
        job = client.submit(handle_file(args.image), args.question, "custom", api_name="/ask")
        first = None
        for text in job:
            if text and first is None:
                first = time.monotonic() - asked
        answer = job.result()
        whole = time.monotonic() - asked
        while not ready and time.monotonic() - start < 300:
            time.sleep(0.1)
    finally:
        app.terminate()
        app.wait(30)
    summary = {
        "kernel_cache": "warm" if args.warm else "cold", "listening_s": round(listening, 2),
        "ready_s": round(ready[0], 2) if ready else None, "first_text_s": round(first or whole, 2),
        "first_answer_s": round(whole, 2), "answer": answer,
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0 if ready and answer else 1


if __name__ == "__main__":
    sys.exit(main())
