"""The training command end to end on tiny parts and a tiny caption set: runs, checkpoints, resumes, plots."""

from __future__ import annotations

import json

from PIL import Image

from vqa_chat import train
from vqa_chat.training_data import build_examples, easy_vqa_description


def write_captions(folder):
    colours = ["red", "blue", "green", "yellow"]
    for split in ("train", "test"):
        lines = []
        for c in colours:
            path = folder / f"{split}-{c}.png"
            Image.new("RGB", (40, 40), c).save(path)
            lines.append(json.dumps({"image": str(path), "caption": f"a {c} square"}))
        (folder / f"{split}.jsonl").write_text("\n".join(lines))


def run(tmp_path, parts, *overrides):
    model = [f"{k}={v}" for k, v in parts.items()]
    args = ["dataset=captions", f"data_dir={tmp_path}", f"out_dir={tmp_path / 'run'}", "batch_size=4",
            "warmup_steps=1", "eval_every=3", "eval_limit=4", "save_every=2", "precision=fp32", "lr=3e-3",
            "mp_num_queries=2", "mp_hidden=32", "mp_layers=2", "mp_heads=4", *model, *overrides]  # fmt: skip
    train.main(args)


def test_train_saves_resumes_and_plots(tmp_path, tiny_vlm_parts, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_CACHE", str(tmp_path / "cache"))
    write_captions(tmp_path)
    run(tmp_path, tiny_vlm_parts, "max_steps=4")
    out = tmp_path / "run"
    state = json.loads((out / "history.json").read_text())
    assert [s for s, _ in state["loss"]] == [1, 2, 3, 4]
    assert (out / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "final").iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "checkpoint" / "trainer_state.pt").exists()
    run(tmp_path, tiny_vlm_parts, "max_steps=6")  # same command, more steps: continues from step 4
    state = json.loads((out / "history.json").read_text())
    assert [s for s, _ in state["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in state["eval"]] == [3, 4, 6]


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
