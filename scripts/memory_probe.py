"""Does serving chats leak memory on the model path? The load test's chats without Gradio, in one process.

    python scripts/memory_probe.py [--backend custom] [--sessions 16] [--turns 5] [--rounds 6]

Each round, every session (ChatSession, the app's own) asks its turns about its own picture, all sessions
at once, then is reset. After each round it prints the process RSS and the live torch tensors (count and
MB, after garbage collection): a leak on the model path shows as tensors that keep adding up, whatever the
allocator does with RSS.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from load_test import make_images, question, rss_mb  # noqa: E402  (scripts/ is on sys.path)

from vqa_chat.backends import configure  # noqa: E402
from vqa_chat.chat.session import ChatSession  # noqa: E402
from vqa_chat.engine.types import BackendOptions, GenerationSettings  # noqa: E402


def live_tensors() -> tuple[int, int]:
    found = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(found), sum(t.nbytes for t in found) // 2**20


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="custom")
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=12)
    args = p.parse_args(argv)
    configure(args.backend, BackendOptions(max_batch=8, max_waiting=8))  # the app's
    pictures = make_images(args.sessions, Path(tempfile.mkdtemp()))  # the load test's own
    sessions = [ChatSession() for _ in range(args.sessions)]
    settings = GenerationSettings(args.max_new_tokens)

    def chat(i: int) -> None:
        for t in range(args.turns):
            image = pictures[i] if t == 0 else None
            list(sessions[i].ask(image, question(i, t), args.backend, settings))

    for r in range(1, args.rounds + 1):
        with ThreadPoolExecutor(args.sessions) as pool:
            list(pool.map(chat, range(args.sessions)))
        for s in sessions:
            s.reset()
        gc.collect()
        count, mb = live_tensors()
        print(f"round {r}: RSS {rss_mb(os.getpid())} MB, live tensors {count} ({mb} MB)", flush=True)


if __name__ == "__main__":
    main()
