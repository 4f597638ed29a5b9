"""The training command end to end on tiny parts and a tiny caption set: runs, checkpoints, resumes, plots."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vqa_chat.model.answer_head import IGNORE, AnswerHead, answer_vocabulary
from vqa_chat.model.vision_language_model import VisionLanguageModel
from vqa_chat.train import loop as train
from vqa_chat.train.data import build_examples, contrast_twin, easy_vqa_attributes, easy_vqa_description


def write_captions(folder):
    colours = ["red", "blue", "green", "yellow"]
    for split in ("train", "test"):
        lines = []
        for c in colours:
            path = folder / f"{split}-{c}.png"
            Image.new("RGB", (40, 40), c).save(path)
            lines.append(json.dumps({"image": str(path), "caption": f"a {c} square"}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines))


def run(tmp_path, parts, *overrides, out="run"):
    model = [f"{k}={v}" for k, v in parts.items()]
    args = ["dataset=captions", f"data_dir={tmp_path}", f"out_dir={tmp_path / out}", "batch_size=4",
            "warmup_steps=1", "eval_every=3", "eval_limit=4", "save_every=2", "precision=fp32", "lr=3e-3",
            "mp_num_queries=2", "mp_hidden=32", "mp_layers=2", "mp_heads=4", *model, *overrides]  # fmt: skip
    train.main(args)


@pytest.mark.slow  # training runs
def test_train_saves_resumes_and_plots(tmp_path, tiny_vlm_parts, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_CACHE", str(tmp_path / "cache"))
    write_captions(tmp_path)
    run(tmp_path, tiny_vlm_parts, "max_steps=4")
    out = tmp_path / "run"
    state = json.loads((out / "history.json").read_text())
    assert [s for s, _ in state["loss"]] == [1, 2, 3, 4]
    assert (out / "curves.png").stat().st_size > 1000
    final = sorted(p.name for p in (out / "final").iterdir())
    assert final == ["config.json", "domain.json", "model.safetensors"]  # no stage 1: no answer head
    assert (out / "checkpoint" / "trainer_state.pt").exists()
    run(tmp_path, tiny_vlm_parts, "max_steps=6")  # same command, more steps: continues from step 4
    state = json.loads((out / "history.json").read_text())
    assert [s for s, _ in state["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in state["eval"]] == [3, 4, 6]


@pytest.mark.slow
def test_a_killed_run_resumed_ends_exactly_where_a_straight_run_does(tmp_path, tiny_vlm_parts, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_CACHE", str(tmp_path / "cache"))
    write_captions(tmp_path)
    run(tmp_path, tiny_vlm_parts, "max_steps=6", out="straight")
    save = train.save_checkpoint

    def save_then_die(model, head, optimizer, scaler, step, history, cfg):
        save(model, head, optimizer, scaler, step, history, cfg)
        if step == 4:
            raise KeyboardInterrupt  # killed right after the checkpoint of step 4

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tiny_vlm_parts, "max_steps=6", out="resumed")
    assert not (tmp_path / "resumed" / "final").exists()
    monkeypatch.setattr(train, "save_checkpoint", save)
    run(tmp_path, tiny_vlm_parts, "max_steps=6", out="resumed")  # the same command again: steps 5 and 6
    histories = [json.loads((tmp_path / out / "history.json").read_text()) for out in ("straight", "resumed")]
    assert histories[0] == histories[1]  # the same losses at every step, the same evaluations
    assert [s for s, _ in histories[1]["loss"]] == [1, 2, 3, 4, 5, 6]
    a, b = (load_file(tmp_path / out / "final" / "model.safetensors") for out in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same weights, bit for bit


def test_overrides_reach_both_configs():
    cfg = train.load_config(None, ["lr=0.5", "mp_layers=2", "vit_blocks=[1, -1]", "mp_question=false"])
    assert cfg.lr == 0.5 and cfg.model.mp_layers == 2 and cfg.model.vit_blocks == [1, -1]
    assert cfg.model.mp_question is False


def test_easy_vqa_descriptions_come_from_the_annotations():
    qas = [("what is the blue shape?", "rectangle"), ("is there a red shape?", "no")]
    assert easy_vqa_description(qas) == "A blue rectangle on a light background."
    teal = easy_vqa_description([("what color is the circle?", "teal")])
    assert teal == "A teal circle on a light background."
    assert easy_vqa_description([("is there a red shape?", "no")]) is None
    records = [{"image": "a.png", "question": "what color is the triangle?", "answers": ["red"] * 10,
                "answer_type": "color"}]  # fmt: skip
    examples = build_examples(records, describe=True)
    assert [e.target for e in examples] == ["red", "A red triangle on a light background."]
    assert examples[1].prompt == "Question: Describe this image in detail. Answer:"


def test_contrast_twins_flip_the_answer_and_hide_the_prior():
    qas = [("what is the blue shape?", "rectangle"), ("is there a red shape?", "no"),
           ("does the image not contain a rectangle?", "no"),
           ("is there a blue shape in the image?", "yes")]  # fmt: skip
    assert easy_vqa_attributes(qas) == ("blue", "rectangle")
    rng = random.Random(0)

    def twin(question, answer):
        return contrast_twin(question, answer, "blue", "rectangle", rng)

    assert twin("is there a red shape?", "no") == ("is there a blue shape?", "yes")
    assert twin("does the image not contain a rectangle?", "no")[1] == "yes"
    question, answer = twin("is there a blue shape in the image?", "yes")
    assert answer == "no" and question.startswith("is there a ") and "blue" not in question
    assert twin("what color is the shape?", "blue") is None
    records = [{"image": "a.png", "question": q, "answers": [a] * 10,
                "answer_type": "yes/no" if a in ("yes", "no") else "shape"} for q, a in qas]  # fmt: skip
    examples = build_examples(records, describe=False, contrast=True)
    yes_no = [e for e in examples if e.answer_type == "yes/no"]
    assert len(yes_no) == 6 and sum(e.target == "yes" for e in yes_no) == 3


def test_answer_head_ignores_unknown_targets():
    head = AnswerHead(answer_vocabulary(["yes", "no", "yes", "red"], 2), dim=8)
    assert head.answers == ["yes", "no"]
    assert head.labels(["no", "red"], "cpu").tolist() == [1, IGNORE]
    tokens = torch.randn(2, 3, 8)
    assert torch.isfinite(head.loss(tokens, ["no", "red"]))
    assert head.loss(tokens, ["red", "blue"]).item() == 0.0
    assert head.predict(tokens)[0] in ("yes", "no")


def test_answer_head_reads_the_product_token_directly():
    head = AnswerHead(["yes", "no"], dim=8, last=True)
    tokens = torch.randn(2, 3, 8)
    changed = tokens.clone()
    changed[:, -1] += 5.0 * torch.randn(2, 8)  # only the last (product) token differs
    assert not torch.allclose(head(tokens), head(changed))
    head.loss(tokens, ["yes", "no"]).backward()
    assert head.last[1].weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_two_stages_classifier_first_then_the_lm(tmp_path, tiny_vlm_parts, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_CACHE", str(tmp_path / "cache"))
    write_captions(tmp_path)
    run(tmp_path, tiny_vlm_parts, "max_steps=5", "stage1_steps=3", "stage1_batch_size=4")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [s for s, _ in history["eval"]] == [3, 5]  # the end of each stage is evaluated
    final = tmp_path / "run" / "final"  # the classifier is exported for the top-k answers, with the domain
    assert sorted(p.name for p in final.iterdir()) == [
        "answer_head.safetensors", "config.json", "domain.json", "model.safetensors"
    ]  # fmt: skip
    model = VisionLanguageModel.from_pretrained(str(final))
    assert model.domain is not None and model.answer_head is not None
    assert train.lr_at(0, train.load_config(None, ["stage1_steps=10", "warmup_steps=2"])) == 5e-4
    assert train.lr_at(10, train.load_config(None, ["stage1_steps=10", "warmup_steps=2"])) == 5e-4
