"""Honest uncertainty: how sure the model was of its answer, and what the chat says when it was not.

While an answer is generated the engine records the log-probability of every answer token under the model
(the log-softmax of the raw logits it chose the token from: engine/types.py `TokenLog`), so judging it
costs no second pass. An answer the chat did not generate token by token (BLIP-2's composed description,
judged by its caption) is scored with one teacher-forced forward pass over `[image tokens][prompt][answer]`
instead (`answer_logprobs`): the same quantity. The answer's confidence is a statistic of those (the mean
log-prob by default: the log of the geometric-mean token probability; or the lowest one). Below a
threshold the chat says in plain words that it is unsure, instead of stating a guess as fact. (Advice to
retake the photo comes only from its measured light and sharpness.)

The threshold is calibrated on held-out data with `python -m vqa_chat.eval.calibrate` and kept
in configs/confidence.json, one entry per backend:

    {"custom": {"threshold": -0.42, "statistic": "mean", "dataset": "easy-vqa", "split": "test", ...}}

Without an entry the backend uses DEFAULT_THRESHOLD (uncalibrated; the chat still works).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vqa_chat import settings
from vqa_chat.chat.conversation import Turn

log = logging.getLogger(__name__)

CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "confidence.json"
CONFIG_ENV = "VQA_CHAT_CONFIDENCE"  # another calibration file
DEFAULT_THRESHOLD = math.log(0.3)  # mean token probability below 30 %: unsure (uncalibrated fallback)
STATISTICS = ("mean", "min")



@dataclass
class Calibration:
    threshold: float = DEFAULT_THRESHOLD
    statistic: str = "mean"  # "mean" or "min" of the answer's token log-probs
    calibrated: bool = False  # False: DEFAULT_THRESHOLD, no calibration file entry


def config_path() -> Path:
    return Path(settings.read().confidence or CONFIG_PATH)


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


def answer_logprobs(backend, image_embeds, prompt: str, answer: str) -> list[float] | None:
    """Token log-probs of the answer text as it follows `Answer:`, teacher-forced (None when it can't be
    scored)."""
    answer = answer.strip()
    return backend.answer_logprobs(image_embeds, prompt, answer) if answer else None


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


def check(turn: Turn, backend_name: str, logprobs: list[float]) -> None:
    """Judge `turn`'s answer by its recorded token log-probs (TokenLog.logprobs; empty: not scored) and mark
    it unsure when below the backend's threshold."""
    turn.confidence = statistic(logprobs, calibration(backend_name).statistic) if logprobs else None
    turn.unsure = is_unsure(backend_name, turn.confidence)


def check_given(turn: Turn, backend, image_embeds, prompt: str, answer: str) -> None:
    """Like `check`, for an `answer` to `prompt` that was not generated token by token: scored here."""
    try:
        turn.confidence = answer_confidence(backend, image_embeds, prompt, answer)
    except Exception:  # scoring is a bonus: never lose the answer over it
        log.exception("could not score the answer")
        return
    turn.unsure = is_unsure(backend.name, turn.confidence)
