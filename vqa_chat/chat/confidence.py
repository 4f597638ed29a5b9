"""Honest uncertainty: how sure the model was of its answer, and what the chat says when it was not.

After an answer is generated we score it once with the language model (one forward pass over
`[image tokens][prompt][answer]`, teacher-forced): the log-probability of every answer token. The answer's
confidence is a statistic of those (the mean log-prob by default: the log of the geometric-mean token
probability; or the lowest one). Below a threshold the chat says in plain words that it is unsure and how to
retake the photo, instead of stating a guess as fact.

The threshold is calibrated on held-out data with `python -m vqa_chat.eval.calibrate` and kept
in configs/confidence.json, one entry per backend:

    {"custom": {"threshold": -0.42, "statistic": "mean", "dataset": "easy-vqa", "split": "test", ...}}

Without an entry the backend uses DEFAULT_THRESHOLD (uncalibrated; the chat still works).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "confidence.json"
CONFIG_ENV = "VQA_CHAT_CONFIDENCE"  # another calibration file
DEFAULT_THRESHOLD = math.log(0.3)  # mean token probability below 30 %: unsure (uncalibrated fallback)
STATISTICS = ("mean", "min")

UNSURE_PREFIX = "I'm not sure about this. My best guess:"
RETAKE_ADVICE = (
    "The photo may be unclear to me. If you can, take it again: a little closer to the thing you are "
    "asking about, with more light, and holding the camera steady."
)


@dataclass
class Calibration:
    threshold: float = DEFAULT_THRESHOLD
    statistic: str = "mean"  # "mean" or "min" of the answer's token log-probs
    calibrated: bool = False  # False: DEFAULT_THRESHOLD, no calibration file entry


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or CONFIG_PATH)


@cache
def _read(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def calibration(backend_name: str) -> Calibration:
    """The calibrated threshold of `backend_name`, or the uncalibrated default."""
    entry = _read(str(config_path())).get(backend_name)
    if not isinstance(entry, dict) or "threshold" not in entry:
        return Calibration()
    statistic = entry.get("statistic", "mean")
    return Calibration(float(entry["threshold"]), statistic if statistic in STATISTICS else "mean", True)


def save_calibration(backend_name: str, entry: dict, path: str | Path | None = None) -> Path:
    """Write (or replace) `backend_name`'s entry in the calibration file; other entries are kept."""
    path = Path(path or config_path())
    data = dict(_read(str(path)))
    data[backend_name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    _read.cache_clear()
    return path


def _lm_inputs(backend, image_embeds: torch.Tensor, prompt: str):
    """(causal LM, LM input embeddings [1, T, D]) for `prompt` about the image, or None if unsupported."""
    if hasattr(backend, "_prompt_embeds"):  # BLIP-2: [image tokens][BOS + prompt]
        embeds, _ = backend._prompt_embeds(image_embeds, prompt)  # [T, D]
        return backend.model.language_model, embeds[None]
    if hasattr(backend, "inputs") and hasattr(getattr(backend, "model", None), "lm"):  # our Q-Former VLM
        embeds, _, _ = backend.inputs(image_embeds, [prompt])  # [1, T, D]
        return backend.model.lm, embeds
    return None


@torch.no_grad()
def token_logprobs(backend, image_embeds, prompt: str, answer_ids: list[int]) -> list[float] | None:
    """Log-probability of each answer token given the image, the prompt and the answer tokens before it."""
    found = _lm_inputs(backend, image_embeds, prompt)
    if found is None or not answer_ids:
        return None
    lm, embeds = found
    table = lm.get_input_embeddings()
    ids = torch.tensor([answer_ids], device=table.weight.device)  # [1, A]
    full = torch.cat([embeds.to(table.weight.device, table.weight.dtype), table(ids)], dim=1)  # [1, T + A, D]
    logits = lm(inputs_embeds=full).logits[0, embeds.shape[1] - 1 : -1].float()  # [A, V]
    logprobs = logits.log_softmax(-1).gather(1, ids[0, :, None].to(logits.device))  # [A, 1]
    return logprobs[:, 0].tolist()


def answer_logprobs(backend, image_embeds: torch.Tensor, prompt: str, answer: str) -> list[float] | None:
    """Token log-probs of the answer text (tokenized as it follows `Answer:`, with a leading space)."""
    answer = answer.strip()
    if not answer or getattr(backend, "tokenizer", None) is None:
        return None
    ids = backend.tokenizer(" " + answer, add_special_tokens=False).input_ids
    return token_logprobs(backend, image_embeds, prompt, ids)


def statistic(logprobs: list[float], kind: str = "mean") -> float:
    return min(logprobs) if kind == "min" else sum(logprobs) / len(logprobs)


def answer_confidence(backend, image_embeds, prompt: str, answer: str) -> float | None:
    """The answer's confidence under `backend`'s calibrated statistic (None when it can't be scored)."""
    logprobs = answer_logprobs(backend, image_embeds, prompt, answer)
    if not logprobs:
        return None
    return statistic(logprobs, calibration(backend.name).statistic)


def is_unsure(backend_name: str, confidence: float | None) -> bool:
    return confidence is not None and confidence < calibration(backend_name).threshold


def hedged(answer: str) -> str:
    """The chat's wording for an answer the model was not sure of."""
    return f"{UNSURE_PREFIX} {answer}\n\n{RETAKE_ADVICE}"
