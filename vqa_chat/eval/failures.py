"""Failure analysis as Markdown, and the short summary table printed after an evaluation.

A question counts as wrong when its official accuracy is below 100 % (VQAv2 gives partial credit: 30 %,
60 %, 90 %). Wrong answers are grouped by answer type and by question type, with counts, the most frequent
mistakes (predicted -> expected) and a few examples each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from vqa_chat.data.datasets import most_common


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ground_truth(answers: Sequence[str]) -> str:
    return ", ".join(f"{a} ×{n}" for a, n in Counter(answers).most_common()) or "(none)"


def _example(record: Mapping, answer: str, accuracy: float) -> str:
    return (
        f"- q{record['question_id']} “{record['question']}” → predicted **{answer or '(empty)'}**; "
        f"ground truth: {_ground_truth(record['answers'])}; accuracy {100 * accuracy:.0f} %; "
        f"image `{record['image']}`"
    )


def _section(title: str, key: str, records, answers, accuracies, examples: int) -> list[str]:
    totals = Counter(r[key] for r in records)
    wrong = {}  # group -> [(record, answer, accuracy)]
    for r, a, acc in zip(records, answers, accuracies, strict=True):
        if acc < 1:
            wrong.setdefault(r[key], []).append((r, a, acc))
    order = sorted(totals, key=lambda g: (-len(wrong.get(g, [])), -totals[g], g))
    lines = [f"## By {title}", "", f"| {title} | wrong | questions | wrong % |", "|---|---:|---:|---:|"]
    for group in order:
        n_wrong, n = len(wrong.get(group, [])), totals[group]
        lines.append(f"| {_cell(group)} | {n_wrong} | {n} | {100 * n_wrong / n:.2f} |")
    for group in order:
        if group not in wrong:
            continue
        items = wrong[group]
        mistakes = Counter((a, most_common(r["answers"])) for r, a, _ in items)
        common = ", ".join(f"“{p}” for “{e}” ({n})" for (p, e), n in mistakes.most_common(3))
        lines += ["", f"### {_cell(group) or '(none)'}: {len(items)} wrong of {totals[group]}", ""]
        lines += [f"Most frequent mistakes (predicted for expected): {common}.", ""]
        lines += [_example(r, a, acc) for r, a, acc in items[:examples]]
    return lines + [""]


def failures_markdown(
    records: Sequence[Mapping], answers: Sequence[str], accuracies: Sequence[float], examples: int = 3
) -> str:
    """Markdown analysis of the wrong answers. `records` are VQA records (question_id, image, question,
    answers, answer_type, question_type), `answers` the predictions and `accuracies` the official
    per-question accuracies in [0, 1], all in the same order."""
    n_wrong = sum(acc < 1 for acc in accuracies)
    lines = [
        "# Failure analysis",
        "",
        f"{len(records)} questions scored; {n_wrong} not fully right (official accuracy below 100 %).",
        "",
    ]
    args = records, answers, accuracies, examples
    return "\n".join(lines + _section("answer type", "answer_type", *args)
                     + _section("question type", "question_type", *args))  # fmt: skip


def summary_table(report: Mapping, records: Sequence[Mapping], max_rows: int = 10) -> str:
    """A short plain-text table: overall accuracy, then the largest answer and question types."""
    lines = [f"official VQA accuracy: {report['overall']:.2f} %  ({len(records)} questions)"]
    for title, key, field in (("answer type", "perAnswerType", "answer_type"),
                              ("question type", "perQuestionType", "question_type")):  # fmt: skip
        counts = Counter(r[field] for r in records)
        rows = sorted(report[key].items(), key=lambda kv: -counts[kv[0]])
        width = max([len(title), *(len(str(group)) for group, _ in rows[:max_rows])])
        lines.append(f"  {title:<{width}}  accuracy  questions")
        lines += [f"  {group:<{width}}  {acc:8.2f}  {counts[group]:9d}" for group, acc in rows[:max_rows]]
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more {title}s in the report")
    return "\n".join(lines)
