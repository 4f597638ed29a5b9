"""The engine's threads: the names of those it starts, how many CPU threads its work uses, and running a
block of work with that many."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch

from vqa_chat.engine.types import BackendOptions

SCHEDULER_THREAD = "vqa-chat-scheduler"  # batching.py: one per loaded LM, every chat's prefill and decode
GENERATE_THREAD = "vqa-chat-generate"  # generation.py: one answer's transformers `generate` call
ENGINE_THREADS = (SCHEDULER_THREAD, GENERATE_THREAD)


def running() -> list[threading.Thread]:
    """The engine's threads alive in this process now (a backend's `close()` ends its scheduler's)."""
    return [t for t in threading.enumerate() if t.name in ENGINE_THREADS]


def engine_threads(options: BackendOptions) -> int:
    """CPU threads of the engine thread: `options.engine_threads`, or half the cores (0), so that the rest
    serve the web app, image encoding and photo facts beside it. Measured on this 2-core machine (one engine
    thread): a short answer through the app 280-290 ms instead of 305-390 ms with two, and 200-232 ms
    asked directly against 195-265 ms; inside a worker thread, two OpenMP threads also made a decode step
    of the LM slower (69-75 ms against 43-46 ms with one). On a GPU the threads only launch kernels."""
    return options.engine_threads or max(1, (os.cpu_count() or 2) // 2)


@contextmanager
def threads(n: int):
    """Run the block with `n` CPU threads in this thread (0: as it is). torch.set_num_threads sets this
    thread's OpenMP and MKL counts; the process-wide figure torch.get_num_threads reports (which other
    threads' parallel loops also read) is `n` for the block's duration, then restored."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)
