"""Measure the photo question router (answers.intent) on labelled phrasings.

    python -m vqa_chat.photo.router_eval tests/data/router_dev.tsv

Each file has one `question<TAB>intent` per line (blank lines and lines starting with # skipped). Prints the
accuracy overall and per intent (recall: of the questions labelled X, how many went to X), then every
confusion as `expected -> got: question`.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vqa_chat.photo.router import INTENTS, intent


@dataclass
class Result:
    question: str  # as written in the file
    expected: str  # the intent in the file
    got: str  # what the router said

    @property
    def right(self) -> bool:
        return self.expected == self.got


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """(question, intent) pairs from a labelled file; an unknown intent name is an error."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        question, _, expected = line.rpartition("\t")
        if expected.strip() not in INTENTS:
            raise ValueError(f"{path}:{n}: unknown intent {expected.strip()!r}")
        rows.append((question.strip(), expected.strip()))
    return rows


def evaluate(rows: list[tuple[str, str]]) -> list[Result]:
    return [Result(q, e, intent(q)) for q, e in rows]


def accuracy(results: list[Result]) -> float:
    return sum(r.right for r in results) / max(1, len(results))


def report(results: list[Result]) -> str:
    """Accuracy overall and per intent, then the confusions."""
    lines = [f"accuracy {accuracy(results):.3f} ({sum(r.right for r in results)}/{len(results)})"]
    totals, rights = Counter(r.expected for r in results), Counter(r.expected for r in results if r.right)
    lines += [f"  {name:<9} {rights[name] / totals[name]:.3f} ({rights[name]}/{totals[name]})"
              for name in INTENTS if totals[name]]
    misses = [r for r in results if not r.right]
    lines.append(f"confusions ({len(misses)}):")
    lines += [f"  {r.expected} -> {r.got}: {r.question}" for r in sorted(misses, key=lambda r: r.expected)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.photo.router_eval",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="question<TAB>intent files")
    args = p.parse_args(argv)
    for path in args.files:
        print(f"{path}")
        print(report(evaluate(read_tsv(path))))


if __name__ == "__main__":
    main()
