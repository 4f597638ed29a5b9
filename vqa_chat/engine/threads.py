"""The engine's CPU threads: how many it uses, and running a block of work with that many."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from vqa_chat.engine.types import BackendOptions


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
