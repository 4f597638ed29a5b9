"""`python -m vqa_chat.eval.evaluate` end to end on tiny files, with a fake backend (the real ones are tested
elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vqa_chat.backends import Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat.images import load_image
from vqa_chat.data.datasets import load_easy_vqa, write_official
from vqa_chat.engine import generation
from vqa_chat.engine.types import BackendOptions
from vqa_chat.eval.evaluate import greedy_settings, main, score_records
from vqa_chat.eval.failures import failures_markdown
from vqa_chat.model.domain import Domain, words
from vqa_chat.prompts import load_prompt


class ScriptedBackend(Backend):
    """Answers from a fixed list, in order; records every batch it is given and every picture it encodes."""

    name = "custom"

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.batches: list[tuple[int, list[str]]] = []
        self.encoded: list[Image.Image] = []

    def encode_image(self, image):
        assert image.mode == "RGB"
        self.encoded.append(image)
        return torch.zeros(1, 1, 1)

    def count_tokens(self, text):
        return len(text.split())

    def stream(self, image_embeds, prompt, settings, stop=None):
        yield self.answers.pop(0)

    def generate_encoded(self, encodings, prompts, settings):
        assert not settings.do_sample and settings.num_beams == 1  # greedy
        assert len(encodings) == len(prompts)
        self.batches.append((len(prompts), prompts))
        return [" " + self.answers.pop(0) + "\n" for _ in prompts]


@pytest.fixture
def registry(install):
    """The backend registry for one test: `registry(custom=fake)` installs a fake, and nothing the test
    installs, loads or configures leaks into other tests."""
    install()
    return install


@pytest.fixture(scope="module")
def easy_records():
    return load_easy_vqa("test")[:10]


def test_run_easy_vqa(tmp_path, registry, easy_records, capsys):
    truth = [r["answers"][0] for r in easy_records]
    predicted = truth[:7] + ["Yes", "purple", truth[9]]  # "Yes" scores 0: all ten annotators said "yes"/"no"
    fake = ScriptedBackend(predicted)
    registry(custom=fake)
    out = tmp_path / "out"
    main(["run", "--backend", "custom", "--dataset", "easy-vqa", "--split", "test", "--limit", "10",
          "--batch-size", "4", "--no-progress", "--results", str(out / "results.json"),
          "--report", str(out / "report.json"), "--failures", str(out / "failures.md")])  # fmt: skip
    assert [n for n, _ in fake.batches] == [4, 4, 2]
    assert len(fake.encoded) == len({r["image"] for r in easy_records})  # each picture once
    assert fake.batches[0][1][0] == f"Question: {easy_records[0]['question']} Answer:"
    results = json.loads((out / "results.json").read_text())
    assert [r["question_id"] for r in results] == [r["question_id"] for r in easy_records]
    assert [r["answer"] for r in results] == predicted  # stripped
    report = json.loads((out / "report.json").read_text())
    assert report["overall"] == 80.0
    assert set(report["perAnswerType"]) <= {"yes/no", "shape", "color"}
    assert report["meta"]["questions"] == 10 and report["meta"]["dataset"] == "easy-vqa"
    failures = (out / "failures.md").read_text()
    assert "2 not fully right" in failures and "**purple**" in failures and "## By question type" in failures
    assert "official VQA accuracy: 80.00 %" in capsys.readouterr().out


def write_tiny_official(root: Path) -> tuple[Path, Path]:
    questions = {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "How many cats?", "question_id": 10},
        {"image_id": 1, "question": "What color is the cat?", "question_id": 11},
        {"image_id": 2, "question": "Is it day?", "question_id": 20},
    ]}  # fmt: skip

    def ann(qid, answers, qtype, atype):
        return {"question_id": qid, "image_id": qid // 10, "question_type": qtype, "answer_type": atype,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i}
                            for i, a in enumerate(answers, 1)]}  # fmt: skip

    annotations = {"annotations": [
        ann(10, ["2"] * 2 + ["3"] * 8, "how many", "number"),
        ann(11, ["orange"] * 9 + ["the orange"], "what color is the", "other"),
        ann(20, ["yes"] * 10, "is it", "yes/no"),
    ]}  # fmt: skip
    (root / "q.json").write_text(json.dumps(questions))
    (root / "a.json").write_text(json.dumps(annotations))
    return root / "q.json", root / "a.json"


def test_score_cli(tmp_path, capsys):
    q, a = write_tiny_official(tmp_path)
    results = [{"question_id": 10, "answer": "Two"}, {"question_id": 11, "answer": "An orange."},
               {"question_id": 20, "answer": "yes."}]  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(results))
    main(["score", "--questions", str(q), "--annotations", str(a), "--results", str(tmp_path / "r.json"),
          "--report", str(tmp_path / "report.json"), "--failures", str(tmp_path / "failures.md"),
          "--image-dir", "/coco/val2014"])  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    # 10: "two" -> "2" matches 2 of 10 -> 0.6; 11: normalised, matches all -> 1; 20: no normalisation -> 0
    assert report["overall"] == 53.33
    assert report["perAnswerType"] == {"number": 60.0, "other": 100.0, "yes/no": 0.0}
    assert report["perQuestionType"] == {"how many": 60.0, "what color is the": 100.0, "is it": 0.0}
    failures = (tmp_path / "failures.md").read_text()
    assert "/coco/val2014/COCO_val2014_000000000002.jpg" in failures and "accuracy 60 %" in failures
    assert "yes ×10" in failures and "2 ×2" in failures
    out = capsys.readouterr().out
    assert "53.33" in out and "number" in out


def test_score_cli_rejects_incomplete_results(tmp_path):
    q, a = write_tiny_official(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps([{"question_id": 10, "answer": "2"}]))
    with pytest.raises(SystemExit, match="2 annotated questions have no answer"):
        main(["score", "--questions", str(q), "--annotations", str(a), "--results", str(tmp_path / "r.json"),
              "--report", str(tmp_path / "report.json")])  # fmt: skip


def test_export_then_score_is_exact_match(tmp_path, easy_records):
    write_official(easy_records, tmp_path, "easy-vqa", "test")
    answers = [r["answers"][0] for r in easy_records]
    answers[0] = answers[0].upper()  # exact match: case counts when the ten annotators agree
    ids = [r["question_id"] for r in easy_records]
    results = [{"question_id": qid, "answer": x} for qid, x in zip(ids, answers, strict=True)]
    (tmp_path / "r.json").write_text(json.dumps(results))
    main(["score", "--questions", str(tmp_path / "questions.json"), "--annotations",
          str(tmp_path / "annotations.json"), "--results", str(tmp_path / "r.json"),
          "--report", str(tmp_path / "report.json")])  # fmt: skip
    assert json.loads((tmp_path / "report.json").read_text())["overall"] == 90.0
    report, per_question = score_records(easy_records, answers)  # the same from Python
    assert report["overall"] == 90.0 and per_question[easy_records[0]["question_id"]] == 0.0


def test_export_cli(tmp_path, capsys):
    main(["export", "--dataset", "easy-vqa", "--split", "test", "--out-dir", str(tmp_path)])
    annotations = json.loads((tmp_path / "annotations.json").read_text())["annotations"]
    assert len(annotations) == 9_673 and "wrote 9673 questions" in capsys.readouterr().out


def test_failures_markdown_groups(easy_records):
    answers = [r["answers"][0] for r in easy_records]
    answers[1] = "nonsense"
    accuracies = [1.0] * len(answers)
    accuracies[1] = 0.0
    text = failures_markdown(easy_records, answers, accuracies)
    record = easy_records[1]
    assert f"### {record['answer_type']}: 1 wrong of" in text
    assert f"### {record['question_type']}: 1 wrong of" in text
    assert f"“nonsense” for “{record['answers'][0]}” (1)" in text


def test_run_without_ground_truth_writes_results_only(tmp_path, registry, capsys):
    question = {"image_id": 7, "question": "Why?", "question_id": 7000}
    questions = {"data_subtype": "test-dev2015", "questions": [question]}
    (tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps(questions))
    (tmp_path / "test2015").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test2015" / "COCO_test2015_000000000007.jpg")
    registry(custom=ScriptedBackend(["because"]))
    main(["run", "--backend", "custom", "--dataset", "vqav2", "--split", "test-dev",
          "--data-dir", str(tmp_path), "--no-progress", "--results", str(tmp_path / "r.json"),
          "--report", str(tmp_path / "report.json")])  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text()) == [{"question_id": 7000, "answer": "because"}]
    assert not (tmp_path / "report.json").exists() and "nothing to score" in capsys.readouterr().out


def run_as_before(backend: CustomBackend, records, batch_size: int, settings) -> list[str]:
    """The evaluate run's answers as they were computed before each picture was encoded once: every batch's
    pictures loaded and encoded again (the custom backend's old `generate_batch`), then the domain check,
    which loaded and encoded each picture once more (one `Backend.knows` per question)."""
    template = load_prompt("question")
    answers = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        patches = backend.model.vision.encode([load_image(r["image"]) for r in batch])  # [B, N, C]
        embeds, mask, ids = backend.inputs(patches, [template.format(question=r["question"]) for r in batch])
        replies = generation.generate_batch(backend.model.lm, backend.tokenizer, embeds, mask, settings, ids)
        answers += [a.strip() for a in replies]
    for path in dict.fromkeys(r["image"] for r in records):
        image = load_image(path)
        embeds = backend.encode_image(image)
        for i, r in enumerate(records):
            if r["image"] == path and not backend.knows(embeds, image, r["question"]).model_answers:
                answers[i] = "(out of domain)"
    return answers


def test_run_outputs_are_those_of_before(tmp_path, registry, easy_records, tiny_vlm):
    """A real (tiny) custom model with a domain that leaves some pictures and questions out: the results
    file is byte for byte what encoding every picture again for every question and for the domain check
    gave, and the report is the same."""
    records = load_easy_vqa("test")[:23]  # questions about 3 pictures; batches of 5 cut across them
    backend = CustomBackend(tiny_vlm(), options=BackendOptions(engine="generate"))
    paths = list(dict.fromkeys(r["image"] for r in records))
    pooled = torch.cat([backend.encode_image(load_image(p)).mean(1) for p in paths])  # [3, C]
    distances = ((pooled - pooled.mean(0)) / pooled.std(0)).pow(2).mean(-1)
    vocabulary = sorted({w for r in records[::2] for w in words(r["question"])})  # odd questions may fall out
    backend.model.domain = Domain(pooled.mean(0).tolist(), pooled.std(0).tolist(),
                                  float(distances.max()) * 0.99, 0.0, vocabulary)  # fmt: skip
    registry(custom=backend)
    out = tmp_path / "out"
    main(["run", "--backend", "custom", "--dataset", "easy-vqa", "--split", "test", "--limit", "23",
          "--batch-size", "5", "--max-new-tokens", "4", "--no-progress",
          "--results", str(out / "results.json"),
          "--report", str(out / "report.json")])  # fmt: skip
    answers = run_as_before(backend, records, 5, greedy_settings(4))
    before = [{"question_id": r["question_id"], "answer": a} for r, a in zip(records, answers, strict=True)]
    assert (out / "results.json").read_text() == json.dumps(before, indent=1) + "\n"
    outside = answers.count("(out of domain)")
    assert 0 < outside < len(records)  # the check decided both ways
    report = json.loads((out / "report.json").read_text())
    assert report["overall"] == score_records(records, answers)[0]["overall"]
    assert report["meta"]["out_of_domain"] == outside
