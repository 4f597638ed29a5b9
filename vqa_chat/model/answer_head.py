"""The first training stage: teach the Q-Former to read the image for the question, before the LM.

BLIP-2 trains its Q-Former in two stages: first with the frozen image encoder alone (representation
learning), then with the frozen LM (generative learning). Our first stage is a simpler version of that
idea: an answer classifier on the image tokens (their mean over the queries) learns the training set's
most frequent answers, with the question inside the Q-Former (`mp_question`). It needs no pass through
the LM, so a CPU step takes a fraction of a second instead of seconds, and the second stage only has to
teach the LM to read what the queries already know. The head is exported beside the model
(answer_head.safetensors): the chat shows its top-5 answers with their probabilities.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

IGNORE = -100  # label of a target that is not among the head's answers
FILE = "answer_head.safetensors"


def answer_vocabulary(targets: list[str], size: int) -> list[str]:
    """The `size` most frequent training targets (answers, and descriptions where they repeat)."""
    return [t for t, _ in Counter(targets).most_common(size)]


class AnswerHead(nn.Module):
    """Answer logits from the mean of the image tokens and, with `last`, from the last token alone (the
    Q-Former's question x image product token, `mp_product`), so the product gets its own direct signal."""

    def __init__(self, answers: list[str], dim: int, last: bool = False):
        super().__init__()
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, len(self.answers))
        self.last = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, len(self.answers))) if last else None

    def labels(self, targets: list[str], device) -> torch.Tensor:
        return torch.tensor([self.index.get(t, IGNORE) for t in targets], device=device)  # [B]

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        x = image_tokens.float()  # [B, Q, D]
        logits = self.proj(self.norm(x.mean(1)))  # [B, K]
        return logits if self.last is None else logits + self.last(x[:, -1])  # [B, K]

    def loss(self, image_tokens: torch.Tensor, targets: list[str]) -> torch.Tensor:
        labels = self.labels(targets, image_tokens.device)
        if (labels == IGNORE).all():
            return image_tokens.sum() * 0.0  # nothing to learn from this batch
        return F.cross_entropy(self(image_tokens), labels, ignore_index=IGNORE)

    @torch.no_grad()
    def predict(self, image_tokens: torch.Tensor) -> list[str]:
        return [self.answers[i] for i in self(image_tokens).argmax(-1).tolist()]

    @torch.no_grad()
    def top_k(self, image_tokens: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The k likeliest answers for one example [1, Q, D], with their probabilities."""
        probs = self(image_tokens).softmax(-1)[0]  # [K]
        values, indices = probs.topk(min(k, len(self.answers)))
        return [(self.answers[i], v) for i, v in zip(indices.tolist(), values.tolist())]

    def save(self, folder: str) -> None:
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        meta = {"answers": json.dumps(self.answers), "last": json.dumps(self.last is not None)}
        save_file(state, os.path.join(folder, FILE), metadata=meta)

    @classmethod
    def load(cls, folder: str, device="cpu") -> AnswerHead | None:
        """The head saved in `folder`, or None when the model has none."""
        path = os.path.join(folder, FILE)
        if not os.path.exists(path):
            return None
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata()
        state = load_file(path, device=str(device))
        head = cls(json.loads(meta["answers"]), state["proj.weight"].shape[1], json.loads(meta["last"]))
        head.load_state_dict(state)
        return head.to(device).eval()
