"""Data sets as plain lists of dict records, and a writer for the official VQA JSON layout.

    load(dataset, split, data_dir="")         any data set below by name (see DATASETS)
    load_easy_vqa(split)                      the PyPI `easy_vqa` package ("train" 38,575 / "test" 9,673)
    load_vqav2(data_dir, split)               VQAv2 official JSON files + COCO image folders
    load_vqa_json(questions, annotations)     any pair of files in the official layout (e.g. our exports)
    load_graphcore(path, split)               a local export of `Graphcore/vqa` (JSON, JSONL or parquet)
    write_official(records, out_dir)          questions.json + annotations.json in the official layout
Image-caption pairs ("captions", "flickr8k") are read by `vqa_chat.data.captions` (record shape there).
Nothing is downloaded: every file is read from disk. Images open with `vqa_chat.chat.images.load_image`, the
chat's own loader, so evaluation sees each picture exactly as the chat would.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TypedDict

from vqa_chat.data.captions import load_captions_jsonl, load_flickr8k

VQA_DATASETS = ("easy-vqa", "vqav2", "graphcore")
DATASETS = (*VQA_DATASETS, "captions", "flickr8k")


class VQARecord(TypedDict):
    """One question about one image (a plain dict: `record["question"]`)."""

    question_id: int  # unique within its split
    image: str  # path of the image file; open it with `vqa_chat.chat.images.load_image`, like an upload
    question: str
    answers: list[str]  # the annotators' answers: 10 in the VQA layouts; [] when a split has no answers
    answer_type: str  # VQAv2: "yes/no" | "number" | "other"; easy-VQA: "yes/no" | "shape" | "color"
    question_type: str  # the question's opening words, e.g. "what color is the"
    image_id: int | str  # COCO / easy-VQA image id (the image path when a layout gives nothing better)


def most_common(answers: list[str]) -> str:
    """The answer most annotators gave (the first of those tied); "" for no answers."""
    return Counter(answers).most_common(1)[0][0] if answers else ""


# ---------------------------------------------------------------------------------------------- easy-VQA

EASY_VQA_SHAPES = ("circle", "rectangle", "triangle")
# in the order training's contrast twins draw from (train/data.py)
EASY_VQA_COLORS = ("red", "green", "blue", "yellow", "teal", "brown", "gray", "black")
EASY_VQA_ANNOTATORS = 10  # the single answer is written as ten identical answers: the metric is exact match
# Question types, the way the official layout defines them: the longest of these prefixes that opens the
# question (words, not characters). They cover every easy-VQA question template.
EASY_VQA_QUESTION_TYPES = (
    "is there a", "is there not a", "is a", "is no", "does the image contain a",
    "does the image not contain a", "what color is the", "what is the color of the", "what shape",
    "what is the",
)  # fmt: skip


def easy_vqa_answer_type(answer: str) -> str:
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in EASY_VQA_SHAPES:
        return "shape"
    return "color" if answer in EASY_VQA_COLORS else "other"


def question_type(question: str, types: tuple[str, ...] = EASY_VQA_QUESTION_TYPES) -> str:
    """The longest prefix from `types` that opens the question; else its first three words."""
    words = question.lower().rstrip("?").split()
    matches = [t for t in types if words[: len(t.split())] == t.split()]
    return max(matches, key=len) if matches else " ".join(words[:3])


def load_easy_vqa(split: str = "test") -> list[VQARecord]:
    """easy-VQA from the installed `easy_vqa` package; question_id is the question's index in its split."""
    import easy_vqa

    if split == "train":
        texts, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        texts, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise ValueError(f"easy-VQA has the splits 'train' and 'test', not {split!r}")
    return [
        VQARecord(
            question_id=i,
            image=paths[image_id],
            question=text,
            answers=[answer] * EASY_VQA_ANNOTATORS,
            answer_type=easy_vqa_answer_type(answer),
            question_type=question_type(text),
            image_id=image_id,
        )
        for i, (text, answer, image_id) in enumerate(zip(texts, answers, image_ids, strict=True))
    ]


# --------------------------------------------------------------------------- the official VQA JSON layout


def to_official(records: list[VQARecord], data_type: str = "", data_subtype: str = "") -> tuple[dict, dict]:
    """(questions, annotations) dicts in the official layout. Questions also carry our `image` path (an
    extra key the official tools ignore) so scoring can point at the images."""
    header = {
        "info": {"description": f"{data_type} {data_subtype}, written by vqa_chat".strip()},
        "license": {"name": "see the data set's own license"},
        "data_type": data_type,
        "data_subtype": data_subtype,
    }
    question_rows = [{k: r[k] for k in ("image_id", "question", "question_id", "image")} for r in records]
    annotations = [
        {
            "question_id": r["question_id"],
            "image_id": r["image_id"],
            "question_type": r["question_type"],
            "answer_type": r["answer_type"],
            "multiple_choice_answer": most_common(r["answers"]),
            "answers": [  # distinct answer ids: the official script leaves one annotator out by its dict
                {"answer": a, "answer_confidence": "yes", "answer_id": i}
                for i, a in enumerate(r["answers"], start=1)
            ],
        }
        for r in records
    ]
    questions = {**header, "task_type": "Open-Ended", "questions": question_rows}
    return questions, {**header, "annotations": annotations}


def write_official(
    records: list[VQARecord], out_dir: str | Path, data_type: str = "", data_subtype: str = ""
) -> tuple[Path, Path]:
    """Write `questions.json` and `annotations.json` into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    questions, annotations = to_official(records, data_type, data_subtype)
    paths = out_dir / "questions.json", out_dir / "annotations.json"
    for path, data in zip(paths, (questions, annotations), strict=True):
        path.write_text(json.dumps(data))
    return paths


def load_vqa_json(
    questions_file: str | Path,
    annotations_file: str | Path | None = None,
    image_dir: str | Path | None = None,
    image_subtype: str | None = None,
) -> list[VQARecord]:
    """Records from official-layout files. The image is the question's `image` key when present (our
    exports), else `image_dir/COCO_{image_subtype or data_subtype}_{image_id:012d}.jpg`. Without an
    annotations file (test splits) the records have no answers and no types."""
    questions = json.loads(Path(questions_file).read_text())
    subtype = image_subtype or questions.get("data_subtype", "")
    anns = {}
    if annotations_file is not None:
        anns = {a["question_id"]: a for a in json.loads(Path(annotations_file).read_text())["annotations"]}
    records = []
    for q in questions["questions"]:
        ann = anns.get(q["question_id"], {})
        answers = [a["answer"] for a in ann.get("answers", [])]
        coco_name = f"COCO_{subtype}_{int(q['image_id']):012d}.jpg"
        records.append(
            VQARecord(
                question_id=q["question_id"],
                image=q.get("image") or str(Path(image_dir or ".") / coco_name),
                question=q["question"],
                answers=answers,
                answer_type=ann.get("answer_type", ""),
                question_type=ann.get("question_type", ""),
                image_id=q["image_id"],
            )
        )
    return records


VQAV2_SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015", "test-dev": "test-dev2015"}


def _find(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name`, else `data_dir/*/name` (e.g. Questions/, Annotations/), else None."""
    found = [data_dir / name, *sorted(data_dir.glob(f"*/{name}"))]
    return next((p for p in found if p.is_file()), None)


def load_vqav2(data_dir: str | Path, split: str = "val") -> list[VQARecord]:
    """VQAv2 in its official layout under `data_dir` (files there or one folder down):
    `v2_OpenEnded_mscoco_{sub}_questions.json`, `v2_mscoco_{sub}_annotations.json` (absent for test
    splits) and the images `{img_sub}/COCO_{img_sub}_{image_id:012d}.jpg` (also looked for under
    `images/`), where sub is train2014 / val2014 / test2015 / test-dev2015 for split train / val / test /
    test-dev, and img_sub the same except test2015 for test-dev."""
    data_dir = Path(data_dir)
    sub = VQAV2_SUBTYPES.get(split, split)
    questions = _find(data_dir, f"v2_OpenEnded_mscoco_{sub}_questions.json")
    if questions is None:
        raise FileNotFoundError(f"no v2_OpenEnded_mscoco_{sub}_questions.json in {data_dir} or below")
    image_sub = "test2015" if sub.startswith("test-dev") else sub
    image_dirs = [data_dir / image_sub, data_dir / "images" / image_sub]
    image_dir = next((d for d in image_dirs if d.is_dir()), image_dirs[0])
    annotations = _find(data_dir, f"v2_mscoco_{sub}_annotations.json")
    return load_vqa_json(questions, annotations, image_dir, image_sub)


# ------------------------------------------------------------------------------------ Graphcore/vqa layout

# Graphcore/vqa's label weights are the usual soft scores: 1, 2, 3 and 4+ annotators -> 0.3, 0.6, 0.9, 1.0.
_WEIGHT_TO_ANNOTATORS = ((0.95, 4), (0.75, 3), (0.45, 2), (0.0, 1))


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pandas as pd  # needs pyarrow or fastparquet

        return pd.read_parquet(path).to_dict("records")
    text = path.read_text()
    if path.suffix == ".jsonl" or not text.lstrip().startswith("["):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def graphcore_answers(label: dict) -> list[str]:
    """Annotators' answers rebuilt from a `label` {ids, weights}: each id repeated 1-4 times by its weight.
    Answers outside Graphcore's answer vocabulary are gone, so scores on these only approximate VQAv2's."""
    answers = []
    for answer, weight in zip(list(label["ids"]), list(label["weights"]), strict=True):
        answers += [answer] * next(n for threshold, n in _WEIGHT_TO_ANNOTATORS if weight > threshold)
    return answers


def load_graphcore(
    path: str | Path, split: str = "validation", image_root: str | Path | None = None
) -> list[VQARecord]:
    """Rows of the `Graphcore/vqa` layout (`question`, `question_type`, `question_id`, `image_id` = image
    path, `answer_type`, `label` {ids, weights}) from a local export: a file, or a folder holding
    `{split}.jsonl`, `{split}.json` or `{split}.parquet`. Relative image paths are resolved against
    `image_root` (default: the file's folder)."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f"{split}{ext}" for ext in (".jsonl", ".json", ".parquet")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"none of {[str(c) for c in candidates]} exists")
    root = Path(image_root) if image_root else path.parent
    records = []
    for row in _read_rows(path):
        label = row.get("label") or {"ids": [], "weights": []}
        answers = graphcore_answers(label)
        image = str(root / row["image_id"])  # an absolute image_id stays as it is
        coco_id = re.search(r"_(\d{12})\.\w+$", image)
        records.append(
            VQARecord(
                question_id=int(row["question_id"]),
                image=image,
                question=row["question"],
                answers=answers,
                answer_type=row.get("answer_type", ""),
                question_type=row.get("question_type", ""),
                image_id=int(coco_id.group(1)) if coco_id else row["image_id"],
            )
        )
    return records


def load(dataset: str, split: str, data_dir: str | Path | None = "") -> list[dict]:
    """Records of `dataset` (one of DATASETS) for `split`. `data_dir` (not needed for easy-vqa): the VQAv2
    folder, the Graphcore export (folder or file), the captions JSONL (file, or folder holding
    `{split}.jsonl`) or the Flickr8k folder. VQA sets give `VQARecord`s, caption sets `CaptionRecord`s."""
    if dataset == "easy-vqa":
        return load_easy_vqa(split)
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {DATASETS}")
    if not data_dir:
        raise ValueError(f"the {dataset} data set needs a data folder (data_dir / --data-dir)")
    data_dir = Path(data_dir)
    if dataset == "vqav2":
        return load_vqav2(data_dir, split)
    if dataset == "graphcore":
        return load_graphcore(data_dir, split)
    if dataset == "captions":
        return load_captions_jsonl(data_dir / f"{split}.jsonl" if data_dir.is_dir() else data_dir)
    return load_flickr8k(data_dir, split)
