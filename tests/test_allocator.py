"""Freed memory goes back to the OS when the model is idle (allocator.py): the cause of the app's RSS
growth under load, and its fix."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.engine import allocator
from vqa_chat.engine.batching import Scheduler
from vqa_chat.engine.types import BackendOptions, GenerationSettings, Inputs

ROOT = Path(__file__).resolve().parents[1]

# 100 blocks of 1 MB with small live tensors between them are freed; prints how many MB RSS kept
PROBE = """
import sys, torch
from vqa_chat.engine import allocator
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
x = torch.ones(2**20); del x  # a 4 MB block freed: glibc raises its mmap threshold past 1 MB
before = rss_mb()
big, small = [], []
for _ in range(100):
    big.append(torch.ones(2**18))  # 1 MB, from the heap now
    small.append(torch.ones(256))  # 1 KB, alive between them: the heap's top never comes free
del big
if sys.argv[1] == "trim":
    assert allocator.release_free_memory()
print(round(rss_mb() - before))
"""


def kept_mb(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "VQA_CHAT_MALLOC"))}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-c", PROBE, mode]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.slow  # two child processes that allocate and free hundreds of MB
@pytest.mark.skipif(allocator.malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_freed_memory_leaves_the_process_when_trimmed():
    assert kept_mb("keep") >= 80  # glibc keeps the holes (what grew the app's RSS round after round)
    assert kept_mb("trim") <= 10


def test_the_scheduler_trims_when_its_last_answer_is_done(monkeypatch, tiny_blip2_dir, close_after):
    calls = []
    monkeypatch.setattr(allocator, "release_free_memory", lambda: calls.append(1) or True)
    backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), max_batch=4)))
    image = backend.encode_image(Image.new("RGB", (40, 40), "red"))
    with torch.no_grad():
        embeds, ids = backend._prompt_embeds(image, "Question: what is it? Answer:")
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=4))
    settings = GenerationSettings(max_new_tokens=5, plain=True)
    gens = [scheduler.submit(Inputs.ready(embeds, ids), settings) for _ in range(3)]
    assert all("".join(g) for g in gens)
    deadline = time.monotonic() + 5  # the last text reaches us just before the scheduler tidies up
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 1 <= len(calls) <= 3  # when the batch drained, not after every step
