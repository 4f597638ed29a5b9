"""Compiled matrix-vector kernels for CPU decode steps (engine/decode_kernels.py)."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.engine import decode_kernels as K
from vqa_chat.engine.threads import threads
from vqa_chat.engine.types import BackendOptions, GenerationSettings


@pytest.fixture
def every_linear(monkeypatch):
    """The tiny models' weights are below MIN_WEIGHT (cache-resident, left on F.linear): take them all."""
    monkeypatch.setattr(K, "MIN_WEIGHT", 0)
    monkeypatch.setattr(K, "_failed", [])


def test_kernel_equals_f_linear_for_few_rows_and_leaves_the_rest_to_it(monkeypatch):
    monkeypatch.setattr(K, "_failed", [])
    layer = torch.nn.Linear(256, 512)  # 131k weights: above MIN_WEIGHT
    assert K.compile_decode_linears(torch.nn.Sequential(layer)) == 1
    calls = []
    monkeypatch.setattr(K, "matvec", lambda x, w: calls.append(x.shape[0]) or K._matvec(x, w))
    with torch.inference_mode():
        for rows in (1, 2, 4, 9):
            x = torch.randn(rows, 1, 256)  # [B, 1, in] like a decode step
            assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert calls == [1, 2, 4]  # 9 rows: F.linear
    x = torch.randn(2, 256, requires_grad=True)
    layer(x).sum().backward()  # training goes through F.linear and its autograd
    assert calls == [1, 2, 4] and x.grad is not None


def test_modules_weights_and_state_dict_stay_as_they_are():
    head = torch.nn.Linear(256, 512, bias=False)
    model = torch.nn.Sequential(torch.nn.Embedding(512, 256), head)
    head.weight = model[0].weight  # tied, as in SmolLM2
    keys = list(model.state_dict())
    K.compile_decode_linears(model)
    assert type(model[1]) is torch.nn.Linear and model[1].weight is model[0].weight
    assert list(model.state_dict()) == keys and K.compiled_linears(model) == [head]
    K.plain_linears(model)
    assert K.compiled_linears(model) == [] and "forward" not in vars(head)


def test_small_or_non_fp32_weights_are_left_alone():
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(256, 512).bfloat16())
    assert K.compile_decode_linears(model) == 0


def test_without_a_compiler_decoding_falls_back_to_f_linear(monkeypatch, caplog):
    monkeypatch.setattr(K, "_failed", [])

    def broken(x, w):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(K, "_matvec", broken)
    layer = torch.nn.Linear(256, 512)
    K.compile_decode_linears(torch.nn.Sequential(layer))
    x = torch.randn(1, 256)
    with torch.inference_mode():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
        assert not K.warm_up(torch.nn.Sequential(layer))
    assert "unavailable" in caplog.text and len(K._failed) == 1


def test_greedy_answers_equal_with_and_without_the_kernels(tiny_blip2_dir, every_linear, close_after):
    """Alone and three sessions at once (rows 1-3 on the kernel), the same answers as F.linear."""
    plain = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), decode_kernels=False)))
    fast = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir))))
    assert K.compiled_linears(fast.model.language_model)
    assert not K.compiled_linears(plain.model.language_model)
    settings = GenerationSettings(max_new_tokens=12, plain=True)
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "navy", "white")]
    prompts = ["Question: what is this? Answer:", "Question: what colour? Answer:", "Question: why? Answer:"]
    want = [plain.generate(plain.encode_image(im), p, settings) for im, p in zip(images, prompts)]
    assert [fast.generate(fast.encode_image(im), p, settings) for im, p in zip(images, prompts)] == want
    got = [None] * 3

    def ask(i):
        got[i] = fast.generate(fast.encode_image(images[i]), prompts[i], settings)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert got == want


def test_threads_sets_this_threads_count_and_restores_it():
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads(0):
        assert torch.get_num_threads() == before


def test_two_backends_decoding_at_once_keep_their_answers(tiny_blip2_dir, every_linear, close_after):
    """Two loaded models (two engine threads) calling the one compiled kernel at the same time."""
    a = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir))))
    b = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), max_batch=2)))
    settings = GenerationSettings(max_new_tokens=16, plain=True)
    jobs = [(backend, Image.new("RGB", (40, 40), c), f"Question: what is {c}? Answer:")
            for backend in (a, b) for c in ("red", "teal", "gold")]  # fmt: skip
    want = [backend.generate(backend.encode_image(im), p, settings) for backend, im, p in jobs]
    got = [None] * len(jobs)

    def ask(i):
        backend, im, p = jobs[i]
        got[i] = backend.generate(backend.encode_image(im), p, settings)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(jobs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert got == want and want[:3] == want[3:]  # the same weights: the same answers from either model
