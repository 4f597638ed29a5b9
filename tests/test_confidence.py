"""Honest uncertainty: answer token log-probs (recorded by the engine while the answer is generated, equal to
a teacher-forced pass), the calibrated threshold, and what the chat says."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vqa_chat.backends import custom as custom_module
from vqa_chat.backends.base import teacher_forced_logprobs
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat import confidence
from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.batching import Scheduler
from vqa_chat.engine.types import BackendOptions, GenerationSettings, Inputs, TokenLog
from vqa_chat.eval import calibrate
from vqa_chat.prompts import load_prompt
from vqa_chat.ui.markdown import chat_messages

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


def test_blip2_token_logprobs_equal_generate_scores(tiny_blip2_dir, close_after):
    backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate")))
    embeds = backend.encode_image(Image.new("RGB", (40, 30), "red"))
    prompt_embeds, _ = backend._prompt_embeds(embeds, PROMPT)
    ids, reference = greedy_with_scores(backend.model.language_model, prompt_embeds[None])
    ours = backend.token_logprobs(embeds, PROMPT, ids)
    assert ours == pytest.approx(reference, abs=1e-4)


def test_custom_token_logprobs_equal_generate_scores(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm()))
    patches = backend.encode_image(Image.new("RGB", (40, 40), "blue"))
    embeds, _, _ = backend.inputs(patches, [PROMPT])
    ids, reference = greedy_with_scores(backend.model.lm, embeds)
    assert backend.token_logprobs(patches, PROMPT, ids) == pytest.approx(reference, abs=1e-4)
    score = confidence.answer_confidence(backend, patches, PROMPT, "the car is blue")
    assert score is not None and score < 0


RECORDED = {
    "plain": GenerationSettings(8, plain=True),
    "ours": GenerationSettings(8),  # repetition rules on the answer: the recorded log-probs are the raw ones
    "beams": GenerationSettings(8, num_beams=2),  # (the batched engine hands beam search to `generate`)
    "sampled": GenerationSettings(8, do_sample=True, temperature=0.7),  # before temperature and top-p
}


def load(close_after, kind, engine, tiny_blip2_dir, tiny_vlm, image_tokens="question"):
    """(backend, image embeds) on a tiny random model; the backend is closed after the test."""
    if kind == "blip2":
        backend = Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine=engine))
    else:
        backend = CustomBackend(tiny_vlm(), options=BackendOptions(engine=engine, image_tokens=image_tokens))
    return close_after(backend), backend.encode_image(Image.new("RGB", (40, 40), "blue"))


def streamed(backend, image_embeds, prompt, settings, state=None) -> tuple[str, TokenLog]:
    log = TokenLog()
    answer = "".join(backend.stream(image_embeds, prompt, settings, state=state, log=log))
    assert log.tokens and len(log.logprobs) == len(log.tokens)
    assert backend.tokenizer.decode(log.tokens, skip_special_tokens=True) == answer  # the answer's tokens
    return answer, log


@pytest.mark.parametrize("settings", RECORDED.values(), ids=RECORDED)
@pytest.mark.parametrize("engine", ["batched", "generate"])
@pytest.mark.parametrize("kind", ["blip2", "custom"])
def test_recorded_logprobs_equal_teacher_forced(kind, engine, settings, tiny_blip2_dir, tiny_vlm,
                                                close_after):  # fmt: skip
    """The log-probs the engine records while answering == the teacher-forced pass over the same tokens,
    on a first question and a follow-up (which reuses the first turn's KV in the batched engine)."""
    backend, image_embeds = load(close_after, kind, engine, tiny_blip2_dir, tiny_vlm)
    state, turns = backend.new_state(), []
    for question in ("what color is the car?", "and the sky?"):
        prompt = format_prompt(turns, question)
        answer, log = streamed(backend, image_embeds, prompt, settings, state)
        reference = backend.token_logprobs(image_embeds, prompt, log.tokens)  # teacher-forced
        assert log.logprobs == pytest.approx(reference, abs=1e-4)
        assert all(lp < 0 for lp in log.logprobs)
        turns.append(Turn(question, answer))


def test_recorded_logprobs_in_a_batch_of_chats(tiny_blip2_dir, close_after):
    """Several chats decoded together (left-padded KV, different lengths and settings): each row's log-probs
    are its own answer's."""
    backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate")))
    scheduler = close_after(Scheduler(backend.model.language_model, backend.tokenizer, max_batch=8))
    prompts = [PROMPT, "Question: hi Answer:", "Question: what is on the table near the window? Answer:"]
    images = [backend.encode_image(Image.new("RGB", (40, 40), c)) for c in ("red", "green", "blue")]
    logs, answers = [TokenLog() for _ in prompts], []
    with torch.no_grad():
        inputs = [backend._prompt_embeds(im, p) for im, p in zip(images, prompts)]
    gens = [scheduler.submit(Inputs.ready(e, ids), GenerationSettings(6 + 3 * i, plain=i == 1), log=log)
            for i, ((e, ids), log) in enumerate(zip(inputs, logs))]  # fmt: skip
    answers = ["".join(g) for g in gens]
    assert scheduler.max_rows > 1  # decoded together
    for image, prompt, answer, log in zip(images, prompts, answers, logs):
        assert backend.tokenizer.decode(log.tokens, skip_special_tokens=True) == answer
        assert log.logprobs == pytest.approx(backend.token_logprobs(image, prompt, log.tokens), abs=1e-4)


def test_pinned_image_tokens_score_the_input_the_answer_came_from(tiny_vlm, close_after):
    """image_tokens="first": a follow-up is generated after the first question's image tokens; its recorded
    log-probs are those of that input (the old second pass scored it on the question's own image tokens)."""
    backend, patches = load(close_after, "custom", "batched", None, tiny_vlm, image_tokens="first")
    state = backend.new_state()
    question = "what color is the car?"
    first, _ = streamed(backend, patches, format_prompt([], question), RECORDED["ours"], state)
    prompt = format_prompt([Turn(question, first)], "what shape is it?")
    _, log = streamed(backend, patches, prompt, RECORDED["ours"], state)
    pinned, _ = backend.lm_rows([(patches, prompt, state)])[0]  # [T, D]: the input actually used
    reference = teacher_forced_logprobs(backend.model.lm, pinned[None], log.tokens)
    assert log.logprobs == pytest.approx(reference, abs=1e-4)
    own = backend.token_logprobs(patches, prompt, log.tokens)  # the question's own image tokens
    assert max(abs(a - b) for a, b in zip(log.logprobs, own)) > 1e-3  # a different input


@pytest.mark.parametrize("engine", ["batched", "generate"])
def test_session_judges_the_recorded_logprobs_without_a_second_pass(engine, tiny_vlm, install, close_after,
                                                                    monkeypatch, tmp_path):  # fmt: skip
    backend = close_after(CustomBackend(tiny_vlm(), options=BackendOptions(engine=engine)))
    install(custom=backend)
    monkeypatch.setenv(confidence.CONFIG_ENV, str(tmp_path / "c.json"))
    path = tmp_path / "pic.png"
    Image.new("RGB", (40, 40), "red").save(path)
    passes = []

    def second_pass(*args):
        passes.append(args)
        raise AssertionError("the answer was scored again")

    monkeypatch.setattr(custom_module, "teacher_forced_logprobs", second_pass)
    s = ChatSession()
    list(s.ask(str(path), "what color?", "custom", GenerationSettings(max_new_tokens=4)))
    turn = s.conversation.turns[-1]
    assert passes == [] and turn.confidence is not None and turn.confidence < 0
    monkeypatch.undo()
    patches = s.embeds["custom"]
    answer, log = streamed(backend, patches, turn.prompt, GenerationSettings(max_new_tokens=4))  # again
    assert answer.strip() == turn.answer
    scores = backend.token_logprobs(patches, turn.prompt, log.tokens)  # the second pass it used to run
    assert turn.confidence == pytest.approx(sum(scores) / len(scores), abs=1e-4)


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


def test_calibrate_command_on_a_tiny_model(tiny_vlm, tmp_path, install, close_after, monkeypatch):
    backend = close_after(CustomBackend(tiny_vlm()))
    image = tmp_path / "im.png"
    Image.new("RGB", (40, 40), "red").save(image)
    records = [
        {"question_id": i, "image": str(image), "question": q, "answers": [a] * 10}
        for i, (q, a) in enumerate(QAS[:2] + [("is it red?", "yes")])
    ]
    monkeypatch.setattr(calibrate, "load", lambda dataset, split, data_dir: records)
    install(custom=backend)
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


def test_session_marks_low_confidence_answers(tiny_vlm, install, close_after, monkeypatch, tmp_path):
    backend = close_after(CustomBackend(tiny_vlm()))
    install(custom=backend)
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
