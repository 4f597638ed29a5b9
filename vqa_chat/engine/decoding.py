"""Choosing one sequence's next token and turning its tokens into text, one step at a time.

The scheduler (batching.py) runs the LM for many sequences at once and calls these per sequence, so every
chat keeps its own settings. They reproduce what transformers' `generate` does with the same settings
(generation.generate_kwargs): our logits processors on the generated tokens only (we generate from input
embeddings, so `generate` sees no prompt ids either), then, when sampling, temperature -> top-k -> top-p.
Greedy answers are therefore token-for-token those of `generate` (tests/test_batching.py checks it).
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from vqa_chat.engine import generation
from vqa_chat.engine.types import GenerationSettings


class Sampler:
    """Next-token choice for one sequence: processors, then argmax (greedy) or a sample."""

    def __init__(
        self,
        settings: GenerationSettings,
        tokenizer,
        eos: set[int],
        prompt_ids: list[int] | None = None,
        min_new_tokens: int = 0,
        top_k: int | None = 50,
    ):
        if settings.num_beams > 1:
            raise ValueError("beam search is not stepped here; use generation.stream_generate")
        kwargs = generation.generate_kwargs(settings, tokenizer, None if prompt_ids is None else [prompt_ids])
        self.processors = LogitsProcessorList(kwargs.get("logits_processor", []))
        self.sample = bool(kwargs["do_sample"])
        if self.sample:  # generate's warpers, in its order
            if settings.temperature != 1.0:
                self.processors.append(TemperatureLogitsWarper(settings.temperature))
            if top_k:
                self.processors.append(TopKLogitsWarper(top_k))
            if settings.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(settings.top_p))
        self.eos = torch.tensor(sorted(eos), dtype=torch.long)
        self.min_new_tokens = min_new_tokens  # the empty-answer retry forbids EOS this long

    def __call__(self, generated: list[int], logits: torch.Tensor) -> int:
        """generated: this sequence's new tokens so far; logits: [V] for the next one (left unchanged: the
        answer's TokenLog reads the raw logits)."""
        scores = logits.to(torch.float32, copy=True)[None]  # [1, V]
        if len(generated) < self.min_new_tokens and len(self.eos):
            scores[:, self.eos] = -math.inf
        if self.processors:
            ids = torch.tensor([generated], dtype=torch.long, device=scores.device)  # [1, t]
            scores = self.processors(ids, scores)
        if self.sample:
            return int(torch.multinomial(scores.softmax(-1), 1))
        return int(scores.argmax(-1))


class TextStream:
    """Decodes a growing list of tokens and hands out only the new text (never half a UTF-8 character)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return ""  # wait for the rest of the character (or for the decoder to settle)
        piece, self.text = text[len(self.text) :], text
        return piece

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        piece = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return piece
