"""What the engine takes and gives, for the backends and everyone above them: the options a model is loaded
and served with, the settings of one answer, an answer's LM input (`Inputs`), the answer's token log, and
the "busy" refusal.

They live here, in the engine, because the engine reads them; backends and the chat import them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class GenerationSettings:
    max_new_tokens: int = 40  # answer length cap, in tokens
    do_sample: bool = False  # False = greedy (deterministic); True = temperature / top-p sampling
    temperature: float = 0.7  # sampling temperature (only with do_sample)
    top_p: float = 0.9  # nucleus sampling mass (only with do_sample)
    num_beams: int = 1  # beam search width; >1 disables token streaming granularity but still works
    repetition_penalty: float = 1.15  # ours: discourages "a hat on top of a hat on top of..."
    no_repeat_ngram_size: int = 3  # ours: forbids repeating any 3-gram
    plain: bool = False  # True = none of our adjustments: exactly transformers' greedy generate
    min_new_tokens: int = 0  # forbid EOS before this many tokens (benchmarks use it to fix the length)


@dataclass
class BackendOptions:
    model: str | None = None  # hub id or local folder; None = the backend's default
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None = CUDA when present, else CPU
    dtype: str | None = None  # "float16", "bfloat16", "float32"; None = fp16/bf16 on GPU, fp32 on CPU
    quantize: str | None = None  # None, "8bit"/"4bit" (bitsandbytes; GPU only) or "int8" (dynamic; CPU only)
    engine: str = "batched"  # "batched": continuous batching + prefix KV reuse; "generate": plain HF generate
    max_batch: int = 16  # answers decoded together by the batched engine
    max_waiting: int = 64  # answers allowed to wait for a batch slot; more get a "busy" message
    attn_implementation: str | None = None  # "sdpa" (default), "eager", "flash_attention_2" (GPU)
    compile: bool = False  # GPU: static KV cache + torch.compile (implies engine="generate")
    engine_threads: int = 0  # CPU threads of the engine's prefill and decode (0: half the cores; threads.py)
    decode_kernels: bool = True  # CPU: compiled matrix-vector kernels in decode steps (decode_kernels.py)
    image_tokens: str = "question"  # custom model: "question" (exact) or "first" (see backends/custom.py)


@dataclass
class TokenLog:
    """An answer's tokens as the engine chooses them, each with its log-probability under the model: the
    log-softmax of the LM's raw logits, before our repetition rules, EOS masking, temperature or top-k/p
    (the same quantity a teacher-forced pass over the answer gives). The session hands one to `stream`
    and the confidence check reads it (chat/confidence.py): no second pass. A retry starts it afresh."""

    tokens: list[int] = field(default_factory=list)  # the answer's token ids, EOS not included
    logprobs: list[float] = field(default_factory=list)  # one per token

    def add(self, token: int, logits: torch.Tensor) -> None:
        """Record `token`, chosen after the raw next-token `logits` [V]."""
        logits = logits.float()
        self.tokens.append(token)
        self.logprobs.append(float(logits[token] - logits.logsumexp(-1)))

    def clear(self) -> None:
        self.tokens, self.logprobs = [], []


class BusyError(RuntimeError):
    """Too many chats are waiting for the model (engine queue full, or a server's 429/503);
    str(error) is a user-readable sentence."""


@dataclass(frozen=True)
class Inputs:
    """An answer's LM input, as the engine takes it: built by the engine itself, in one call with those of the
    other requests that arrived at the same time: `build([item, ...])` -> [(embeds [T, D], prompt ids), ...]
    (e.g. the custom model's tokenizer and Q-Former over all the new questions at once), or already built
    (`Inputs.ready`)."""

    build: Callable[[list], list[tuple[torch.Tensor, list[int] | None]]]
    item: object  # this request's part of the call, e.g. (image patches, prompt)

    @classmethod
    def ready(cls, embeds: torch.Tensor, prompt_ids: list[int] | None = None) -> Inputs:
        """An input built already: embeds [T, D] (or [1, T, D]) and the prompt's ids (the no-echo rule)."""
        return cls(_as_built, (embeds.reshape(-1, embeds.shape[-1]), prompt_ids))

    def built(self) -> tuple[torch.Tensor, list[int] | None]:
        """This input alone, built now (for `generate`, outside the engine): embeds [T, D] and prompt ids."""
        return self.build([self.item])[0]


def _as_built(items: list) -> list:
    return items
