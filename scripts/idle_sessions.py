"""Memory of idle sessions: N visitors each upload a 1024x768 photo, ask once and never come back.

    python scripts/idle_sessions.py --sessions 1000            # the README's figure (~15 min here)
    python scripts/idle_sessions.py --sessions 40 --client gradio_client

It starts `app.py` on loopback (the custom backend, the app's own limits and caches), then N sessions one
after another (two at a time), each with its own photo: one of scikit-image's sample photos at 1024x768,
with a stripe of random colour so no two uploads are alike. `--client http` (default) is a plain HTTP
client, as curl or a script would be: it uploads, calls /ask under a new session and leaves without a word,
so the session stays until the idle limit (the hardest case). `--client gradio_client` uses one
gradio_client.Client per visitor and closes it, as a script that ends does (the app frees that session at
once). The app's RSS is read every --every sessions; the figure is the least-squares slope of RSS per
session over the second half (after the caches have filled to their budgets). Then a fresh session must
still answer. Prints one JSON summary; exits 1 if the slope is over --goal-mb or the fresh session fails.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.load_test import rss_mb, slope  # noqa: E402
from vqa_chat.bench import through_app  # noqa: E402

SIZE = (1024, 768)


def sample_photos() -> list[Image.Image]:
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]
    return [Image.fromarray(getattr(data, n)()).convert("RGB").resize(SIZE) for n in names]


def photo(photos: list[Image.Image], i: int, folder: Path) -> str:
    """Visitor i's photo: a sample photo with a stripe of a random colour (every upload differs)."""
    rng = random.Random(i)
    image = photos[i % len(photos)].copy()
    y = rng.randrange(SIZE[1] - 16)
    image.paste(tuple(rng.randrange(256) for _ in range(3)), (0, y, SIZE[0], y + 16))
    path = folder / f"visitor-{i}.jpg"
    image.save(path, quality=90)
    return str(path)


def ask_http(url: str, path: str, question: str, backend: str) -> str:
    """Upload, /ask under a new session (no session hash sent), read the answer, leave."""
    with httpx.Client(base_url=url, timeout=120) as http:
        with open(path, "rb") as f:
            uploaded = http.post("gradio_api/upload", files={"files": (Path(path).name, f)}).json()[0]
        file = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
        event = http.post("gradio_api/call/ask", json={"data": [file, question, backend, 32]}).json()
        answer, kind = "", None
        with http.stream("GET", f"gradio_api/call/ask/{event['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(line)
                    answer = json.loads(line[5:])[-1]
        return answer


def ask_client(url: str, path: str, question: str, backend: str) -> str:
    client = Client(url, verbose=False)
    try:
        return client.predict(handle_file(path), question, backend, 32, api_name="/ask")
    finally:
        client.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/idle_sessions.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--every", type=int, default=25, help="read the app's RSS every this many sessions")
    p.add_argument("--client", choices=["http", "gradio_client"], default="http")
    p.add_argument("--backend", default="custom")
    p.add_argument("--question", default="What is this?")
    p.add_argument("--goal-mb", type=float, default=0.5, help="RSS added per idle session, at most")
    p.add_argument("--app-args", default="", help="more app.py flags, e.g. '--idle-minutes 5'")
    p.add_argument("--json", help="also write the summary here")
    args = p.parse_args(argv)
    ask = ask_http if args.client == "http" else ask_client
    work = Path(tempfile.mkdtemp(prefix="idle-sessions-"))
    app, url = through_app.start_app(["--backend", args.backend, *args.app_args.split()], work / "app.log")
    photos, points, errors = sample_photos(), [], []
    start = time.monotonic()
    try:
        ask(url, photo(photos, -1, work), args.question, args.backend)  # the backend loaded, caches warm
        points.append((0, rss_mb(app.pid)))

        def visit(i: int) -> None:
            path = photo(photos, i, work)
            try:
                ask(url, path, args.question, args.backend)
            except Exception as e:
                errors.append(f"{i}: {e}")
            Path(path).unlink()

        with ThreadPoolExecutor(2) as pool:
            for done in range(0, args.sessions, args.every):
                list(pool.map(visit, range(done, min(done + args.every, args.sessions))))
                points.append((min(done + args.every, args.sessions), rss_mb(app.pid)))
                print(f"{points[-1][0]:5d} sessions  RSS {points[-1][1]:8.1f} MB  "
                      f"{time.monotonic() - start:6.0f} s", flush=True)  # fmt: skip
        fresh = ask(url, photo(photos, args.sessions, work), args.question, args.backend)
    finally:
        app.terminate()
        app.wait(30)
    half = [rss for n, rss in points if n >= args.sessions / 2]
    per_session = slope(half) / args.every if len(half) >= 2 else float("nan")
    summary = {
        "sessions": args.sessions, "client": args.client, "backend": args.backend,
        "rss_mb": points, "rss_mb_per_session_second_half": round(per_session, 4),
        "goal_mb": args.goal_mb, "errors": errors[:10], "error_count": len(errors),
        "fresh_session_answer": fresh, "seconds": round(time.monotonic() - start),
    }  # fmt: skip
    summary["ok"] = per_session <= args.goal_mb and not errors and bool(fresh)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
