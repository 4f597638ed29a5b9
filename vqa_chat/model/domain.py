"""What the custom model knows: is this picture, and this question, like the ones it was trained on?

The bundled model learned easy-VQA's drawn shapes and its 26-word questions. Shown a photo of a cat, it
still answers with one of its 13 words ("circle"). `Domain` lets it say when it is out of its depth:

- the picture: the frozen encoder's patch tokens, averaged over the grid, are compared with the training
  pictures' per-channel mean and spread (a diagonal Mahalanobis distance: the mean squared z-score);
  above the largest distance seen on the training pictures times a margin, the picture is out of domain.
  Every training picture shows a shape, so a picture of (nearly) one flat colour, such as a photo taken
  with a finger over the lens, is out of domain too: its grey-level contrast is below the training floor.
- the question: every word (after a few spelling normalisations) must be one the training questions used.

Fitted by `python -m vqa_chat.train.fit_domain` and kept beside the model as domain.json.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

FILE = "domain.json"
# the same word as the training questions', written differently by users (no guessing beyond this), and
# "this"/"it" for the shape: measured on the bundled model, "what shape is this/it?" and "what color is
# this/it?" are answered as well as the trained wording (60/60 each; "which shape is this?": 0/60)
SPELLINGS = {
    "colour": "color", "colours": "color", "grey": "gray", "picture": "image", "photo": "image",
    "what's": "what is", "there's": "there is", "isn't": "is not", "doesn't": "does not",
    "this": "shape", "it": "shape",
}  # fmt: skip


def words(question: str) -> list[str]:
    """The question's words, lower-case, with SPELLINGS applied."""
    found = re.findall(r"[a-z]+(?:'[a-z]+)?", question.lower().replace("’", "'"))
    return " ".join(SPELLINGS.get(w, w) for w in found).split()


def contrast(picture: Image.Image) -> float:
    """Standard deviation of the grey levels (0-255) of a 64-px copy."""
    return float(np.asarray(picture.convert("L").resize((64, 64)), dtype=np.float32).std())


@dataclass
class Domain:
    mean: list[float]  # per-channel mean of the training pictures' pooled patch tokens [C]
    std: list[float]  # per-channel spread of the same [C]
    threshold: float  # image distance above which a picture is out of domain
    min_contrast: float  # grey-level standard deviation (0-255) below which a picture is out of domain
    vocabulary: list[str]  # every word of the training questions

    @classmethod
    def fit(cls, pooled: torch.Tensor, contrasts: list[float], questions: list[str], margin: float) -> Domain:
        """pooled [n, C]: the training pictures' patch tokens averaged over the grid; their contrasts."""
        mean, std = pooled.mean(0), pooled.std(0).clamp_min(1e-3)  # [C], [C]
        vocabulary = sorted({w for q in questions for w in words(q)})
        fitted = cls(mean.tolist(), std.tolist(), 0.0, min(contrasts) / 2, vocabulary)
        fitted.threshold = float(fitted.image_distance(pooled).max()) * margin
        return fitted

    def image_distance(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, C] -> mean squared z-score per picture [B]."""
        mean = torch.tensor(self.mean, device=pooled.device)
        std = torch.tensor(self.std, device=pooled.device)
        return ((pooled.float() - mean) / std).pow(2).mean(-1)

    def image_in_domain(self, patches: torch.Tensor, picture: Image.Image) -> bool:
        """patches [1, N, C]: what the frozen encoder made of `picture`."""
        if contrast(picture) < self.min_contrast:
            return False
        return bool(self.image_distance(patches.float().mean(1))[0] <= self.threshold)

    def question_in_domain(self, question: str) -> bool:
        known = set(self.vocabulary)
        found = words(question)
        return bool(found) and all(w in known for w in found)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> Domain:
        with open(path) as f:
            return cls(**json.load(f))
