"""The engine of a loaded language model, built as its options ask (BackendOptions, engine/types.py): the
batched scheduler or plain `generate`, an int8 decode copy, compiled decode kernels, its threads; and the
LM's own load-time options (attention implementation, compile). Shared by the backends.

CPU (what this repository's numbers are measured on):
- `engine="batched"` (default): our scheduler (batching.py) decodes all sessions' answers together and
  reuses each session's conversation prefix KV cache (kv.py). `engine="generate"`: one transformers
  `generate` call per answer, no reuse (the baseline the benchmark compares against).
- `engine_threads` (default: half the cores): CPU threads of the engine thread's prefill and decode steps
  (threads.py).
- `decode_kernels=True` (default): the fp32 LM's large Linear layers run decode steps of up to 4 rows on
  compiled matrix-vector kernels (decode_kernels.py: ~2x MKL's speed for these memory-bound products),
  compiled at load; prefill, training and larger batches use F.linear as before.
- `quantize="int8"`: the batched engine decodes with an int8 copy of the LM (dynamic int8 Linear layers,
  quantize.py); prompts are still prefilled in fp32.

GPU (switchable, not measured here: this machine has no GPU):
- `dtype="float16"|"bfloat16"`: half-precision weights and KV cache (the default on CUDA is fp16).
- `attn_implementation="sdpa"` (transformers' default: PyTorch's fused scaled_dot_product_attention,
  flash / memory-efficient kernels on CUDA), `"flash_attention_2"` (needs the flash-attn package), `"eager"`.
- `compile=True`: a static KV cache (`cache_implementation="static"`, fixed shapes) and
  `torch.compile(mode="reduce-overhead")` (CUDA graphs) of the LM's forward. It pays off for long answers
  at batch size 1; the first call compiles for tens of seconds, and every new shape recompiles, so it
  uses `engine="generate"` (the batched engine's shapes change every step).
- `quantize="8bit"|"4bit"`: bitsandbytes, to fit a model in less GPU memory; slower than fp16.
- On Hugging Face ZeroGPU Spaces (the `spaces` package is present) the GPU exists only inside a
  `spaces.GPU` call, so a long-lived scheduler thread cannot use it: `engine="generate"` there.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from vqa_chat.engine.threads import engine_threads
from vqa_chat.engine.types import BackendOptions

log = logging.getLogger(__name__)


def load_kwargs(options: BackendOptions) -> dict:
    """Extra `from_pretrained` keyword arguments for the LM."""
    return {"attn_implementation": options.attn_implementation} if options.attn_implementation else {}


def use_scheduler(options: BackendOptions) -> bool:
    """Whether the batched engine (continuous batching + prefix cache) serves this backend."""
    if options.engine != "batched" or options.compile:
        return False
    return importlib.util.find_spec("spaces") is None  # ZeroGPU: GPU only inside spaces.GPU calls


def engine(lm: torch.nn.Module, tokenizer, options: BackendOptions):
    """The batched engine (batching.Scheduler) for `lm`, or None when answers use `generate` instead.
    With `quantize="int8"` it decodes with an int8 copy of `lm` and prefills with `lm` itself."""
    if not use_scheduler(options):
        return None
    from vqa_chat.engine.batching import Scheduler

    decode_lm = lm
    if options.quantize == "int8":
        from vqa_chat.engine.quantize import int8_decoder

        decode_lm = int8_decoder(lm)
    if options.decode_kernels:  # on the LM that decodes (the int8 copy has no fp32 Linear to compile)
        from vqa_chat.engine import decode_kernels

        if decode_kernels.compile_decode_linears(decode_lm):
            log.info("compiling the CPU decode kernels ...")
            decode_kernels.warm_up(decode_lm)
    threads = engine_threads(options)
    return Scheduler(lm, tokenizer, options.max_batch, options.max_waiting, decode_lm, threads)


def apply(lm: torch.nn.Module, options: BackendOptions) -> torch.nn.Module:
    """Static cache + torch.compile (GPU) on a loaded LM, in place."""
    if options.compile:
        lm.generation_config.cache_implementation = "static"
        lm.forward = torch.compile(lm.forward, mode="reduce-overhead", fullgraph=True)
        log.info("LM compiled with a static KV cache (the first answers are slow while it compiles)")
    return lm
