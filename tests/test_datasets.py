"""Data set loaders: easy-VQA from its PyPI package, the other layouts from tiny files written in tmp_path."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import easy_vqa
import pytest
from PIL import Image

from vqa_chat.chat.images import load_image
from vqa_chat.data import datasets
from vqa_chat.data.captions import load_captions_jsonl, load_flickr8k
from vqa_chat.data.datasets import (
    EASY_VQA_QUESTION_TYPES,
    graphcore_answers,
    load,
    load_easy_vqa,
    load_graphcore,
    load_vqa_json,
    load_vqav2,
    question_type,
    write_official,
)

VQA_KEYS = {"question_id", "image", "question", "answers", "answer_type", "question_type", "image_id"}


def make_image(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


@pytest.fixture(scope="module")
def easy_test():
    return load_easy_vqa("test")


def test_easy_vqa_counts_answers_and_types(easy_test):
    train = load_easy_vqa("train")
    assert (len(train), len(easy_test)) == (38_575, 9_673)
    answers = {r["answers"][0] for r in train + easy_test}
    assert answers == set(easy_vqa.get_answers()) and len(answers) == 13
    for split, n_yes_no in ((train, 28_407), (easy_test, 7_136)):  # the package README's counts
        types = Counter(r["answer_type"] for r in split)
        assert set(types) == {"yes/no", "shape", "color"} and types["yes/no"] == n_yes_no


def test_easy_vqa_records(easy_test):
    first = easy_test[0]
    assert set(first) == VQA_KEYS
    assert first["question"] == "what is the red shape?"
    assert first["answers"] == ["triangle"] * 10 and first["answer_type"] == "shape"
    assert first["question_type"] == "what is the"
    assert [r["question_id"] for r in easy_test] == list(range(len(easy_test)))  # stable ids: the index
    assert all(r["question_type"] in EASY_VQA_QUESTION_TYPES for r in easy_test)
    assert all(len(set(r["answers"])) == 1 and len(r["answers"]) == 10 for r in easy_test[:500])
    assert Path(first["image"]).is_file() and load_image(first["image"]).size == (64, 64)
    with pytest.raises(ValueError):
        load_easy_vqa("val")


@pytest.mark.parametrize(
    "question, expected",
    [
        ("is there not a red shape in the image?", "is there not a"),
        ("is there a circle?", "is there a"),
        ("what color is the triangle?", "what color is the"),
        ("what is the color of the shape?", "what is the color of the"),
        ("what is the blue shape?", "what is the"),
        ("what shape is present?", "what shape"),
        ("how big is it?", "how big is"),  # no listed prefix: the first three words
    ],
)
def test_question_type(question, expected):
    assert question_type(question) == expected


def test_official_layout_round_trip(tmp_path, easy_test):
    records = easy_test[:5]
    questions_path, annotations_path = write_official(records, tmp_path, "easy-vqa", "test")
    questions = json.loads(questions_path.read_text())
    annotations = json.loads(annotations_path.read_text())
    assert questions["data_subtype"] == "test" and len(questions["questions"]) == 5
    ann = annotations["annotations"][0]
    assert ann["multiple_choice_answer"] == "triangle" and ann["question_type"] == "what is the"
    assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))  # ten distinct annotators
    assert load_vqa_json(questions_path, annotations_path) == records


def write_vqav2(root: Path) -> None:
    """A tiny VQAv2 folder: val2014 with annotations (files one folder down) and test-dev2015 without."""
    qs = {"data_subtype": "val2014", "questions": [
        {"image_id": 42, "question": "How many dogs?", "question_id": 42000},
        {"image_id": 42, "question": "Is it sunny?", "question_id": 42001},
    ]}  # fmt: skip
    anns = {"annotations": [
        {"question_id": 42000, "image_id": 42, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2",
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i}
                     for i, a in enumerate(["2"] * 7 + ["two", "3", "2"], 1)]},
        {"question_id": 42001, "image_id": 42, "question_type": "is it", "answer_type": "yes/no",
         "multiple_choice_answer": "yes",
         "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]},
    ]}  # fmt: skip
    (root / "Questions").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Questions" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(qs))
    (root / "Annotations" / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(anns))
    make_image(root / "val2014" / "COCO_val2014_000000000042.jpg")
    test_question = {"image_id": 7, "question": "Why?", "question_id": 7000}
    test_qs = {"data_subtype": "test-dev2015", "questions": [test_question]}
    (root / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps(test_qs))
    make_image(root / "images" / "test2015" / "COCO_test2015_000000000007.jpg")


def test_vqav2(tmp_path):
    write_vqav2(tmp_path)
    records = load_vqav2(tmp_path, "val")
    assert [r["question_id"] for r in records] == [42000, 42001]
    first = records[0]
    assert set(first) == VQA_KEYS and len(first["answers"]) == 10
    assert first["answer_type"] == "number" and first["question_type"] == "how many"
    assert first["image"] == str(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    assert Path(first["image"]).is_file()
    test_dev = load(dataset="vqav2", split="test-dev", data_dir=tmp_path)
    assert test_dev[0]["answers"] == [] and test_dev[0]["answer_type"] == ""
    assert Path(test_dev[0]["image"]).is_file()  # test-dev questions use the test2015 images
    with pytest.raises(FileNotFoundError):
        load_vqav2(tmp_path, "train")


GRAPHCORE_ROWS = [
    {"question": "Where is he looking?", "question_type": "none of the above", "question_id": 262148000,
     "image_id": "val2014/COCO_val2014_000000262148.jpg", "answer_type": "other",
     "label": {"ids": ["at table", "down", "skateboard", "table"], "weights": [0.3, 1.0, 0.3, 0.6]}},
    {"question": "Is it red?", "question_type": "is it", "question_id": 5, "image_id": "other/pic.png",
     "answer_type": "yes/no", "label": {"ids": ["no"], "weights": [0.9]}},
]  # fmt: skip


def test_graphcore_answers_from_weights():
    label = {"ids": ["a", "b", "c", "d"], "weights": [0.30000001192092896, 0.6, 0.9, 1.0]}
    assert Counter(graphcore_answers(label)) == {"a": 1, "b": 2, "c": 3, "d": 4}


def test_graphcore_jsonl_and_json(tmp_path):
    (tmp_path / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in GRAPHCORE_ROWS) + "\n")
    records = load(dataset="graphcore", split="validation", data_dir=tmp_path)
    first = records[0]
    assert set(first) == VQA_KEYS
    assert first["question_id"] == 262148000 and first["image_id"] == 262148
    assert first["image"] == str(tmp_path / "val2014" / "COCO_val2014_000000262148.jpg")
    assert Counter(first["answers"]) == {"down": 4, "table": 2, "at table": 1, "skateboard": 1}
    assert first["question_type"] == "none of the above" and first["answer_type"] == "other"
    assert records[1]["image_id"] == "other/pic.png" and records[1]["answers"] == ["no"] * 3
    (tmp_path / "rows.json").write_text(json.dumps(GRAPHCORE_ROWS))
    from_json = load_graphcore(tmp_path / "rows.json", image_root="/data")
    assert from_json[0]["image"] == "/data/val2014/COCO_val2014_000000262148.jpg"
    with pytest.raises(FileNotFoundError):
        load_graphcore(tmp_path, "train")


def test_graphcore_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(GRAPHCORE_ROWS).to_parquet(tmp_path / "test.parquet")
    records = load_graphcore(tmp_path, "test")
    assert Counter(records[0]["answers"]) == {"down": 4, "table": 2, "at table": 1, "skateboard": 1}


def test_captions_jsonl(tmp_path):
    make_image(tmp_path / "imgs" / "a.png")
    lines = [
        {"image": "imgs/a.png", "caption": "A red square."},
        {"image": "/abs/b.jpg", "caption": "B.", "image_id": 7},
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    records = load_captions_jsonl(tmp_path / "train.jsonl")
    assert records == [
        {"image": str(tmp_path / "imgs" / "a.png"), "caption": "A red square.", "image_id": "imgs/a.png"},
        {"image": "/abs/b.jpg", "caption": "B.", "image_id": "7"},
    ]
    assert load(dataset="captions", split="train", data_dir=tmp_path) == records
    assert load(dataset="captions", split="ignored", data_dir=tmp_path / "train.jsonl") == records


def test_flickr8k(tmp_path):
    text = tmp_path / "Flickr8k_text"
    text.mkdir()
    (text / "Flickr8k.token.txt").write_text(
        "1000_a.jpg#0\tA child in a pink dress .\n1000_a.jpg#1\tA girl climbing stairs .\n"
        "2000_b.jpg#0\tTwo dogs play .\n"
    )
    (text / "Flickr_8k.trainImages.txt").write_text("1000_a.jpg\n")
    (text / "Flickr_8k.testImages.txt").write_text("2000_b.jpg\n")
    make_image(tmp_path / "Flicker8k_Dataset" / "1000_a.jpg")
    everything = load_flickr8k(tmp_path)
    captions = ["A child in a pink dress .", "A girl climbing stairs .", "Two dogs play ."]
    assert [r["caption"] for r in everything] == captions
    train = load(dataset="flickr8k", split="train", data_dir=tmp_path)
    assert [r["image_id"] for r in train] == ["1000_a.jpg", "1000_a.jpg"]
    assert Path(train[0]["image"]).is_file() and set(train[0]) == {"image", "caption", "image_id"}
    assert [r["image_id"] for r in load_flickr8k(tmp_path, "test")] == ["2000_b.jpg"]
    with pytest.raises(FileNotFoundError):
        load_flickr8k(tmp_path, "dev")  # no dev list written


def test_load_errors():
    with pytest.raises(ValueError, match="unknown data set"):
        load("coco", "val", "/tmp")
    with pytest.raises(ValueError, match="needs a data folder"):
        load("vqav2", "val", "")
    assert "easy-vqa" in datasets.DATASETS and "flickr8k" in datasets.DATASETS
