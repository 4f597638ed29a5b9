"""Write the labelled people set (vqa_chat/bench/people_set.py) as files, to look at or to try other tools on.

    python scripts/make_people_set.py [--out people-set]

Writes one PNG per photo and labels.tsv (name, true person count, clear, face, note). The photos are made
from photos inside installed wheels (scikit-image, matplotlib, gradio), so nothing is downloaded and no
image is kept in the repository. `python -m vqa_chat.bench.people` evaluates the detectors on the same set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vqa_chat.bench.people_set import people_set


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("people-set"), help="folder to write into")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["name\tcount\tclear\tface\tnote"]
    for sample in people_set():
        sample.image.save(args.out / f"{sample.name}.png")
        rows.append(f"{sample.name}\t{sample.count}\t{int(sample.clear)}\t{int(sample.face)}\t{sample.note}")
    (args.out / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"{len(rows) - 1} photos and labels.tsv in {args.out}")


if __name__ == "__main__":
    main()
