"""Calibrate the "I'm not sure" threshold of a backend on held-out questions with known answers.

    python -m vqa_chat.eval.calibrate --backend custom --dataset easy-vqa --split test --limit 1000

Answers each question as the chat does (our generation defaults, greedy), keeps each answer's token log-probs
as the engine records them (as the chat's confidence check does, confidence.py), marks it right or wrong with
the official VQA accuracy (>= 0.5 counts as right), and picks the statistic ("mean" or "min" log-prob, or the
one given with --statistic) and the threshold that best separate right from wrong answers: the highest
balanced accuracy, i.e. the mean of "wrong answers flagged" and "right answers not flagged". The threshold and
its numbers go into configs/confidence.json under the backend's name (or --out), which the app reads at
start-up. Use a split the model was not trained on. For easy-VQA the describe request counts too (describe
mode is what many people use): one per image whose questions reveal its colour and shape, right when it gives
"A <colour> <shape> on a light background." (`--no-describe` leaves them out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

from vqa_chat.backends import configure, get_backend
from vqa_chat.chat import confidence
from vqa_chat.chat.images import load_image
from vqa_chat.data.datasets import VQA_DATASETS, load
from vqa_chat.engine.types import BackendOptions, GenerationSettings, TokenLog
from vqa_chat.eval.vqa_metric import question_accuracy
from vqa_chat.prompts import load_prompt
from vqa_chat.train.data import easy_vqa_description

RIGHT = 0.5  # VQA accuracy at or above this counts as a right answer


def choose_threshold(scores: list[float], right: list[bool]) -> tuple[float, dict]:
    """The threshold t (unsure when score < t) with the best balanced accuracy, and its numbers."""
    if len(scores) != len(right) or not scores:
        raise ValueError("need as many right/wrong marks as scores, and at least one")
    n_right, n_wrong = sum(right), len(right) - sum(right)
    ordered = sorted(set(scores))
    middles = [(a + b) / 2 for a, b in zip(ordered, ordered[1:])]
    candidates = [ordered[0] - 1e-6, *middles, ordered[-1] + 1e-6]
    best = None
    for t in candidates:
        flagged_wrong = sum(1 for s, r in zip(scores, right) if s < t and not r)
        kept_right = sum(1 for s, r in zip(scores, right) if s >= t and r)
        parts = [flagged_wrong / n_wrong] if n_wrong else []
        parts += [kept_right / n_right] if n_right else []
        balanced = sum(parts) / len(parts)
        if best is None or balanced > best[0] + 1e-12:
            best = (balanced, t)
    balanced, t = best
    flagged = [s < t for s in scores]
    kept = [r for r, f in zip(right, flagged) if not f]
    unsure = [r for r, f in zip(right, flagged) if f]
    stats = {
        "balanced_accuracy": round(balanced, 4),
        "questions": len(scores),
        "right": n_right,
        "flagged_fraction": round(sum(flagged) / len(scores), 4),
        "accuracy_all": round(n_right / len(scores), 4),
        "accuracy_confident": round(sum(kept) / len(kept), 4) if kept else None,
        "accuracy_unsure": round(sum(unsure) / len(unsure), 4) if unsure else None,
    }
    return t, stats


def calibrate(backend, records, statistic: str = "auto", max_new_tokens: int = 20, progress=True):
    """(calibration entry, per-question rows) for `backend` on VQA `records` with answers."""
    template = load_prompt("question")
    settings = GenerationSettings(max_new_tokens=max_new_tokens)  # the chat's defaults, greedy
    rows, encoded = [], {}
    for r in tqdm(records, desc="calibrating", unit="q", disable=not progress):
        if r["image"] not in encoded:
            encoded = {r["image"]: backend.encode_image(load_image(r["image"]))}  # one image at a time
        embeds = encoded[r["image"]]
        prompt = template.format(question=r["question"])
        log = TokenLog()  # filled while the answer is generated, as in the chat
        answer = backend.generate(embeds, prompt, settings, log=log)
        logprobs = log.logprobs or [float("-inf")]
        rows.append({
            "question_id": r["question_id"], "answer": answer,
            "right": question_accuracy(r["answers"], answer) >= RIGHT,
            "mean": confidence.statistic(logprobs, "mean"), "min": confidence.statistic(logprobs, "min"),
        })  # fmt: skip
    right = [row["right"] for row in rows]
    choices = confidence.STATISTICS if statistic == "auto" else (statistic,)
    results = {}
    for kind in choices:
        scores = [max(row[kind], -1e4) for row in rows]  # an empty answer scores very low, not -inf
        results[kind] = choose_threshold(scores, right)
    kind = max(results, key=lambda k: results[k][1]["balanced_accuracy"])
    threshold, stats = results[kind]
    return {"threshold": round(threshold, 6), "statistic": kind, **stats}, rows


def describe_records(records: list[dict]) -> list[dict]:
    """One describe request per easy-VQA image of `records` whose description its answers reveal."""
    by_image: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        by_image.setdefault(r["image"], []).append((r["question"], r["answers"][0]))
    question, out = load_prompt("describe"), []
    for image, qas in by_image.items():
        text = easy_vqa_description(qas)
        if text:
            out.append({"question_id": f"describe:{image}", "image": image, "question": question,
                        "answers": [text] * 10, "answer_type": "describe"})  # fmt: skip
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vqa_chat.eval.calibrate", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--backend", default="custom", help="backend to calibrate (blip2, custom)")
    p.add_argument("--model", help="model folder or hub id (default: the backend's default)")
    p.add_argument("--dataset", default="easy-vqa", choices=VQA_DATASETS)
    p.add_argument("--split", default="test", help="a held-out split (not trained on)")
    p.add_argument("--data-dir", default="", help="data folder (not needed for easy-vqa)")
    p.add_argument("--limit", type=int, default=1000, help="questions used (0 = all)")
    p.add_argument("--no-describe", action="store_true", help="easy-VQA: no describe requests")
    p.add_argument("--statistic", default="auto", choices=["auto", *confidence.STATISTICS])
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--out", default=None, help=f"calibration file (default: {confidence.CONFIG_PATH.name} "
                   "in configs/, or $VQA_CHAT_CONFIDENCE)")  # fmt: skip
    p.add_argument("--rows", default=None, help="also write every question's score and right/wrong (JSON)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    records = load(args.dataset, args.split, args.data_dir)
    records = [r for r in records if r["answers"]][: args.limit or None]
    if args.dataset == "easy-vqa" and not args.no_describe:
        records += describe_records(records)
    if not records:
        print("error: no questions with answers in that split", file=sys.stderr)
        return 1
    configure(args.backend, BackendOptions(model=args.model, device=args.device, engine="generate"))
    backend = get_backend(args.backend)
    entry, rows = calibrate(backend, records, args.statistic, args.max_new_tokens, not args.no_progress)
    model = args.model or backend.model_id
    with contextlib.suppress(ValueError):  # a folder in this repository is recorded relative to it
        model = str(Path(model).resolve().relative_to(Path(__file__).resolve().parents[2]))
    entry.update(dataset=args.dataset, split=args.split, model=model)
    path = confidence.save_calibration(args.backend, entry, args.out)
    if args.rows:
        Path(args.rows).parent.mkdir(parents=True, exist_ok=True)
        Path(args.rows).write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps(entry, indent=1))
    print(f"wrote the {args.backend} threshold to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
