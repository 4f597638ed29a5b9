"""Evaluate a backend on a VQA data set, or score a results file, with the official VQA accuracy.

    python -m vqa_chat.eval.evaluate run --backend custom --dataset easy-vqa --split test \\
        --results runs/eval/results.json --report runs/eval/report.json --failures runs/eval/failures.md
    python -m vqa_chat.eval.evaluate score --questions Q.json --annotations A.json --results R.json \\
        --report report.json [--failures failures.md]
    python -m vqa_chat.eval.evaluate export --dataset easy-vqa --split test --out-dir runs/easy-vqa-test

`run` answers every question (batched, greedy) and writes the official results format
`[{"question_id", "answer"}]`, then scores it; `score` scores any results file against files in the
official VQA layout; `export` writes a data set in that layout (easy-VQA: each answer by ten annotators).
Reports use the official keys `overall`, `perQuestionType`, `perAnswerType` (percent, two decimals).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from vqa_chat.backends import Backend, configure, get_backend
from vqa_chat.chat.images import load_image
from vqa_chat.data.datasets import VQA_DATASETS, load, load_vqa_json, to_official, write_official
from vqa_chat.engine.types import BackendOptions, GenerationSettings
from vqa_chat.eval.failures import failures_markdown, summary_table
from vqa_chat.eval.vqa_metric import evaluate
from vqa_chat.prompts import load_prompt
from vqa_chat.settings import user_path


def greedy_settings(max_new_tokens: int = 10) -> GenerationSettings:
    """Plain greedy decoding (none of the chat's repetition adjustments): deterministic short answers."""
    return GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, plain=True)


def answer_questions(
    backend: Backend,
    records: Sequence[Mapping],
    batch_size: int = 16,
    settings: GenerationSettings | None = None,
    progress: bool = True,
    domain_check: bool = True,
) -> tuple[list[str], list[bool]]:
    """The backend's answer to every record's question (prompts/question.txt), in order, and per record
    whether its picture or question is outside what the model was trained on (the chat answers those from
    the photo's facts, not the model: the one decision, `Backend.knows`, once per question; all False
    without `domain_check`).

    Each picture is read and encoded once (`Backend.encode_batch`, the new pictures of a batch together),
    however many questions ask about it; its encoding serves the answers and the domain check alike and is
    dropped after its last question. Batches are `batch_size` consecutive records, as `generate_batch` would
    answer them.
    """
    template = load_prompt("question")
    settings = settings or greedy_settings()
    last_use = {r["image"]: i for i, r in enumerate(records)}
    held: dict[str, tuple[Image.Image, object]] = {}  # path -> (picture, its encoding)
    answers: list[str] = []
    flags: list[bool] = []
    with tqdm(total=len(records), desc="answering", unit="q", disable=not progress) as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            new = list(dict.fromkeys(r["image"] for r in batch if r["image"] not in held))
            pictures = [load_image(path) for path in new]
            encodings = backend.encode_batch(pictures) if pictures else []
            held.update(zip(new, zip(pictures, encodings, strict=True), strict=True))
            rows = [held[r["image"]] for r in batch]
            prompts = [template.format(question=r["question"]) for r in batch]
            replies = backend.generate_encoded([encoding for _, encoding in rows], prompts, settings)
            answers += [a.strip() for a in replies]
            for r, (picture, encoding) in zip(batch, rows, strict=True):
                known = not domain_check or backend.knows(encoding, picture, r["question"]).model_answers
                flags.append(not known)
            for i, r in enumerate(batch, start):
                if last_use[r["image"]] == i:
                    del held[r["image"]]
            bar.update(len(batch))
    return answers, flags


def score_records(records: Sequence[Mapping], answers: Sequence[str]) -> tuple[dict, dict]:
    """Official report and {question_id: accuracy in [0, 1]} for predictions on VQA records, exactly as
    if the records were written as official files and scored by `score`.

    From Python (e.g. periodic evaluation in training):
        records = vqa_chat.data.datasets.load("easy-vqa", "test")[:500]
        report, per_question = score_records(records, predictions)  # report["overall"]: percent
    """
    if len(records) != len(answers):
        raise ValueError(f"{len(records)} records but {len(answers)} answers")
    _, annotations = to_official(list(records))
    results = {r["question_id"]: a for r, a in zip(records, answers, strict=True)}
    return evaluate(annotations["annotations"], results)


def write_json(path: str | Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def _finish(report: dict, per_question: dict, records, results: dict, args, meta: dict) -> None:
    """Write the report (and the failure analysis) and print the summary table."""
    records = [r for r in records if r["question_id"] in per_question]
    write_json(args.report, {**report, "meta": {**meta, "questions": len(records)}})
    if args.failures:
        answers = [results[r["question_id"]] for r in records]
        accuracies = [per_question[r["question_id"]] for r in records]
        text = failures_markdown(records, answers, accuracies, examples=args.examples)
        Path(args.failures).parent.mkdir(parents=True, exist_ok=True)
        Path(args.failures).write_text(text)
    print(summary_table(report, records))


def cmd_run(args: argparse.Namespace) -> None:
    records = load(args.dataset, args.split, args.data_dir)
    records = records[: args.limit] if args.limit else records
    configure(args.backend, BackendOptions(model=args.model, device=args.device, dtype=args.dtype))
    backend = get_backend(args.backend)
    settings = greedy_settings(args.max_new_tokens)
    check = not args.no_domain_check  # as in the chat: those are answered from photo facts, counted wrong
    progress = not args.no_progress
    answers, flags = answer_questions(backend, records, args.batch_size, settings, progress, check)
    outside = sum(flags)
    if check:
        answers = ["(out of domain)" if out else a for a, out in zip(answers, flags, strict=True)]
        print(f"{outside} of {len(records)} questions are outside the model's domain (counted wrong)")
    results = {r["question_id"]: a for r, a in zip(records, answers, strict=True)}
    write_json(args.results, [{"question_id": qid, "answer": a} for qid, a in results.items()])
    print(f"wrote {len(results)} answers to {args.results}")
    if not all(r["answers"] for r in records):
        print("this split has no ground-truth answers: nothing to score")
        return
    report, per_question = score_records(records, answers)
    meta = {"dataset": args.dataset, "split": args.split, "backend": args.backend, "model": args.model,
            "out_of_domain": outside}  # fmt: skip
    _finish(report, per_question, records, results, args, meta)


def repeated_answer_entries(annotations: Sequence[Mapping]) -> int:
    """Questions whose answer dicts are not all distinct. The official script leaves an annotator out by
    removing every dict equal to theirs, so there it would drop several at once; we always drop one."""
    distinct = [{json.dumps(x, sort_keys=True) for x in a["answers"]} for a in annotations]
    return sum(len(d) < len(a["answers"]) for d, a in zip(distinct, annotations, strict=True))


def cmd_score(args: argparse.Namespace) -> None:
    annotations = json.loads(Path(args.annotations).read_text())["annotations"]
    repeated = repeated_answer_entries(annotations)
    if repeated:
        print(f"warning: {repeated} questions repeat an identical answer entry", file=sys.stderr)
    results = {r["question_id"]: r["answer"] for r in json.loads(Path(args.results).read_text())}
    try:
        report, per_question = evaluate(annotations, results)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    records = load_vqa_json(args.questions, args.annotations, args.image_dir)
    _finish(report, per_question, records, results, args, {"results": str(args.results)})


def cmd_export(args: argparse.Namespace) -> None:
    records = load(args.dataset, args.split, args.data_dir)
    paths = write_official(records, args.out_dir, args.dataset, args.split)
    print(f"wrote {len(records)} questions to {paths[0]} and {paths[1]}")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def outputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--report", required=True, help="report JSON (official keys, percent)")
        p.add_argument("--failures", help="write the failure analysis (Markdown) here")
        p.add_argument("--examples", type=int, default=3, help="examples per group in the failure analysis")

    run = sub.add_parser("run", help="answer a data set's questions with a backend, then score them")
    run.add_argument("--backend", required=True, choices=["custom", "blip2"])
    run.add_argument("--model", help="hub id or folder (default: the backend's default)")
    run.add_argument("--device", help="cuda, cuda:1, cpu (default: CUDA when present)")
    run.add_argument("--dtype", help="float16, bfloat16 or float32 (default: the backend's choice)")
    run.add_argument("--dataset", required=True, choices=VQA_DATASETS)
    run.add_argument("--split", default="test", help="easy-vqa: train|test; vqav2: train|val|test-dev|test; "
                     "graphcore: the export's split name (default: test)")  # fmt: skip
    run.add_argument("--data-dir", help="data folder (vqav2, graphcore)")
    run.add_argument("--limit", type=int, default=0, help="answer only the first N questions")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--max-new-tokens", type=int, default=10, help="answer length cap (greedy decoding)")
    run.add_argument("--results", required=True, help="results JSON [{question_id, answer}] to write")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-domain-check", action="store_true",  # fmt: skip
                     help="score every answer, also where the chat answers from photo facts")
    outputs(run)
    run.set_defaults(func=cmd_run)

    score = sub.add_parser("score", help="score a results file against official-layout files")
    score.add_argument("--questions", required=True, help="questions JSON (official layout)")
    score.add_argument("--annotations", required=True, help="annotations JSON (official layout)")
    score.add_argument("--results", required=True, help="results JSON [{question_id, answer}]")
    score.add_argument("--image-dir", help="COCO image folder, to show image paths in the failure analysis")
    outputs(score)
    score.set_defaults(func=cmd_score)

    export = sub.add_parser("export", help="write a data set as official-layout questions + annotations")
    export.add_argument("--dataset", required=True, choices=VQA_DATASETS)
    export.add_argument("--split", default="test")
    export.add_argument("--data-dir", help="data folder (vqav2, graphcore)")
    export.add_argument("--out-dir", required=True, help="folder for questions.json and annotations.json")
    export.set_defaults(func=cmd_export)
    return parser


# the path options: `~` expanded (the shell leaves `--report=~/x` alone)
PATHS = ["model", "data_dir", "results", "report", "failures", "questions", "annotations", "image_dir",
         "out_dir"]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for name in PATHS:
        if getattr(args, name, None):
            setattr(args, name, user_path(getattr(args, name)))
    args.func(args)


if __name__ == "__main__":
    main()
