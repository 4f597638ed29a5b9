"""Honest uncertainty: answer token log-probs, the calibrated threshold, and what the chat says."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vqa_chat.backends.base import BackendOptions, GenerationSettings
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat import confidence
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.session import ChatSession
from vqa_chat.eval import calibrate
from vqa_chat.prompts import load_prompt
from vqa_chat.ui.page import chat_messages

PROMPT = "Question: what color is the car? Answer:"


def greedy_with_scores(lm, embeds, n=5):
    """transformers' own greedy generate with output_scores: the reference log-probs."""
    out = lm.generate(
        inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        max_new_tokens=n, do_sample=False, output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    ids = out.sequences[0, -len(out.scores) :].tolist()
    logprobs = [s.log_softmax(-1)[0, i].item() for s, i in zip(out.scores, ids)]
    return ids, logprobs


def test_blip2_token_logprobs_equal_generate_scores(tiny_blip2_dir):
    backend = Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate"))
    embeds = backend.encode_image(Image.new("RGB", (40, 30), "red"))
    prompt_embeds, _ = backend._prompt_embeds(embeds, PROMPT)
    ids, reference = greedy_with_scores(backend.model.language_model, prompt_embeds[None])
    ours = backend.token_logprobs(embeds, PROMPT, ids)
    assert ours == pytest.approx(reference, abs=1e-4)


def test_custom_token_logprobs_equal_generate_scores(tiny_vlm):
    backend = CustomBackend(tiny_vlm())
    patches = backend.encode_image(Image.new("RGB", (40, 40), "blue"))
    embeds, _, _ = backend.inputs(patches, [PROMPT])
    ids, reference = greedy_with_scores(backend.model.lm, embeds)
    assert backend.token_logprobs(patches, PROMPT, ids) == pytest.approx(reference, abs=1e-4)
    score = confidence.answer_confidence(backend, patches, PROMPT, "the car is blue")
    assert score is not None and score < 0


def test_threshold_is_chosen_on_right_and_wrong_answers():
    scores = [-0.1, -0.2, -0.3, -2.0, -2.5, -0.15, -1.9]
    right = [True, True, True, False, False, True, False]
    threshold, stats = calibrate.choose_threshold(scores, right)
    assert -1.9 < threshold < -0.3  # separates them perfectly
    assert stats["balanced_accuracy"] == 1.0 and stats["accuracy_confident"] == 1.0
    threshold, stats = calibrate.choose_threshold([-0.1, -0.5], [True, True])  # nothing wrong: never flag
    assert threshold < -0.5 and stats["flagged_fraction"] == 0


def test_calibration_file_round_trip(tmp_path, monkeypatch):
    path = tmp_path / "confidence.json"
    monkeypatch.setenv(confidence.CONFIG_ENV, str(path))
    assert not confidence.calibration("custom").calibrated  # no file: the uncalibrated default
    confidence.save_calibration("custom", {"threshold": -0.7, "statistic": "min"})
    confidence.save_calibration("blip2", {"threshold": -1.1, "statistic": "mean"})
    cal = confidence.calibration("custom")
    assert (cal.threshold, cal.statistic, cal.calibrated) == (-0.7, "min", True)
    assert set(json.loads(path.read_text())) == {"custom", "blip2"}
    assert confidence.is_unsure("custom", -0.8) and not confidence.is_unsure("custom", -0.5)
    assert not confidence.is_unsure("custom", None)


QAS = [("what color is the shape?", "red"), ("what shape is in the image?", "circle"), ("is it red?", "yes")]


def test_calibrate_command_on_a_tiny_model(tiny_vlm, tmp_path, monkeypatch):
    from vqa_chat import backends

    backend = CustomBackend(tiny_vlm())
    image = tmp_path / "im.png"
    Image.new("RGB", (40, 40), "red").save(image)
    records = [
        {"question_id": i, "image": str(image), "question": q, "answers": [a] * 10}
        for i, (q, a) in enumerate(QAS[:2] + [("is it red?", "yes")])
    ]
    monkeypatch.setattr(calibrate, "load", lambda dataset, split, data_dir: records)
    monkeypatch.setattr(backends, "_loaded", {"custom": backend})
    out = tmp_path / "confidence.json"
    code = calibrate.main(["--backend", "custom", "--limit", "3", "--out", str(out), "--no-progress"])
    entry = json.loads(out.read_text())["custom"]
    assert code == 0 and entry["questions"] == 3 + 1 and entry["statistic"] in ("mean", "min")  # + describe
    assert entry["dataset"] == "easy-vqa" and entry["split"] == "test"


def test_calibration_also_describes_easy_vqa_images():
    def record(i, image, question, answer):
        return {"question_id": i, "image": image, "question": question, "answers": [answer] * 10}

    records = [record(i, "a.png", q, a) for i, (q, a) in enumerate(QAS)] + [record(9, "b.png", *QAS[2])]
    described = calibrate.describe_records(records)  # b.png: its colour and shape are unknown
    assert [(r["image"], r["answers"][0]) for r in described] == [
        ("a.png", "A red circle on a light background.")
    ]
    assert described[0]["question"] == load_prompt("describe")


def test_unsure_answer_is_hedged_in_the_chat_and_retake_advice_comes_only_from_measurements():
    s = ChatSession()
    sure, unsure = Turn("What colour?", "blue"), Turn("What does it say?", "exit", unsure=True)
    dark = Turn("What is it?", "a cup", facts_note="The photo is very dark. Try again with more light.")
    s.log += [sure, unsure, dark]
    messages = chat_messages(s)
    assert messages[1]["content"] == "blue"  # confident answers carry no warning
    assert messages[3]["content"] == "I'm not sure about this. My best guess: exit"  # no retake advice
    assert messages[5]["content"] == "a cup The photo is very dark. Try again with more light."
    assert [line["text"] for line in s.transcript()][1::2] == [
        "blue", "I'm not sure about this. My best guess: exit", messages[5]["content"]
    ]  # the /chat API says the same  # fmt: skip


def test_session_marks_low_confidence_answers(tiny_vlm, monkeypatch, tmp_path):
    from vqa_chat import backends

    backend = CustomBackend(tiny_vlm())
    monkeypatch.setattr(backends, "_loaded", {"custom": backend})
    path = tmp_path / "pic.png"
    Image.new("RGB", (40, 40), "red").save(path)
    monkeypatch.setenv(confidence.CONFIG_ENV, str(tmp_path / "c.json"))
    settings = GenerationSettings(max_new_tokens=3)
    for threshold, unsure in ((0.0, True), (-1e9, False)):  # log-probs are always < 0 and > -1e9
        confidence.save_calibration("custom", {"threshold": threshold, "statistic": "mean"})
        s = ChatSession()
        list(s.ask(str(path), "what color?", "custom", settings))
        turn = s.conversation.turns[-1]
        assert turn.confidence is not None and turn.unsure is unsure
