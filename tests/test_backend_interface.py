"""The backend interface's seams: capabilities declared as data, the one domain decision (`Backend.knows`)
that the chat, the CLI and evaluate all make once per question, each backend's own heatmap prompt, the
custom model's explicit per-session state, and display names from the registry."""

from __future__ import annotations

import pytest
import torch
from fakes import FakeBackend
from PIL import Image

from vqa_chat import backends, cli
from vqa_chat.backends.base import Capabilities, Known
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend, CustomState
from vqa_chat.backends.vllm import VLLMBackend
from vqa_chat.chat import answer_router, describe, heatmap
from vqa_chat.chat.conversation import format_prompt
from vqa_chat.chat.images import load_image
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import BackendOptions, GenerationSettings
from vqa_chat.eval.evaluate import answer_questions
from vqa_chat.photo.facts import photo_facts


class Picky(FakeBackend):
    """A model that knows its domain: pictures as `picture` says, questions about shapes. Counts the checks,
    and draws a heatmap of the prompt it is given."""

    capabilities = Capabilities(heatmap=True, knows_its_domain=True)
    heatmap_prompt = "Question: where is the shape? Answer:"

    def __init__(self, name="picky", picture=True):
        super().__init__(name)
        self.picture, self.checks, self.mapped = picture, [], []

    def picture_in_domain(self, image_embeds, image):
        self.checks.append("picture")
        return self.picture

    def question_in_domain(self, question):
        self.checks.append("question")
        return "shape" in question

    def attention_map(self, image, prompt, image_embeds=None):
        self.mapped.append(prompt)
        return torch.tensor([[0.0, 1.0], [0.0, 0.0]])


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "pic.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return str(path)


def test_knows_decides_the_picture_then_the_question_once():
    image, embeds = Image.new("RGB", (8, 8)), torch.zeros(1, 4, 8)
    picky = Picky()
    assert picky.knows(embeds, image, "what shape is it?") == Known(True, True, own_kind=True)
    assert picky.checks == ["picture", "question"]
    known = picky.knows(embeds, image, "how many cats?")
    assert not known.model_answers and known.picture and known.own_kind
    picky.checks = []
    assert picky.knows(embeds, image, None).model_answers and picky.checks == ["picture"]  # a description
    outside = Picky(picture=False)
    assert outside.knows(embeds, image, "what shape is it?") == Known(False, False, own_kind=False)
    assert outside.checks == ["picture"]  # the question is not asked about a picture the model doesn't know
    general = FakeBackend().knows(embeds, image, "anything at all?")
    assert general == Known(True, True, own_kind=False)  # a general model knows any photo, of no own kind


def test_capabilities_are_declared_as_data(tiny_vlm):
    assert Blip2Backend.capabilities == Capabilities(heatmap=True, composes_descriptions=True)
    assert VLLMBackend.capabilities == Capabilities()
    assert FakeBackend().capabilities == Capabilities()
    qformer = CustomBackend(tiny_vlm(), options=BackendOptions(engine="generate"))
    assert qformer.capabilities == Capabilities(heatmap=True)  # the tiny model has no fitted domain
    mlp = CustomBackend(tiny_vlm(mp_type="mlp"), options=BackendOptions(engine="generate"))
    assert not mlp.capabilities.heatmap  # early fusion: no cross-attention to show


def test_no_heatmap_capability_is_said_without_asking_the_backend():
    class Blind(Picky):
        capabilities = Capabilities()

    blind = Blind("blind")
    with pytest.raises(ValueError, match="blind backend cannot show where it looked"):
        heatmap.attention_map(blind, Image.new("RGB", (8, 8)), "Q")
    assert blind.mapped == []


def test_each_backend_names_its_heatmap_prompt(tiny_vlm, picture, install):
    custom = CustomBackend(tiny_vlm(), options=BackendOptions(engine="generate"))
    assert custom.heatmap_prompt == format_prompt([], describe.describe_question())  # what it was trained on
    assert Blip2Backend.heatmap_prompt == ""  # BLIP-2's Q-Former does not read the prompt
    picky = Picky()
    install(picky=picky)
    s = ChatSession()
    s.set_image(picture)
    path, alt = s.heatmap_for(picky)  # before any answer: the backend's own prompt
    assert picky.mapped == [picky.heatmap_prompt] and path in s.thumbnails and "top right" in alt
    list(s.ask(None, "what shape is it?", "picky", GenerationSettings(max_new_tokens=2)))
    s.heatmap_for(picky)  # after an answer: that answer's prompt
    assert picky.mapped[-1] == "Question: what shape is it? Answer:"


def test_the_session_decides_once_per_question(picture, install):
    picky = Picky()
    install(picky=picky)
    s = ChatSession()
    list(s.ask(picture, "what shape is it?", "picky", GenerationSettings(max_new_tokens=2)))
    assert picky.checks == ["picture", "question"] and s.conversation.turns[-1].source == "model"
    picky.checks = []
    list(s.describe(None, "picky", GenerationSettings(max_new_tokens=2)))
    assert picky.checks == ["picture"] and s.conversation.turns[-1].source == "model"
    picky.checks = []
    list(s.ask(None, "how many cats?", "picky", GenerationSettings(max_new_tokens=2)))
    turn = s.conversation.turns[-1]
    assert picky.checks == ["picture", "question"] and turn.source == "photo facts"
    described = "Question: what shape is it? Answer: w0 w1 Question: Describe this image in detail. Answer:"
    assert picky.prompts == ["Question: what shape is it? Answer:", described]  # not asked about the cats


def test_the_cli_and_evaluate_make_the_same_decision(picture, install, capsys):
    picky = Picky()
    install(picky=picky)
    assert cli.main(["--backend", "picky", "--image", picture, "--question", "how many cats?"]) == 0
    said = capsys.readouterr().out.strip()
    assert picky.checks == ["picture", "question"] and picky.prompts == []  # answered from the photo's facts
    facts, known = photo_facts(load_image(picture)), Known(True, False, own_kind=True)
    assert said == answer_router.from_facts("how many cats?", facts, known, "picky")  # as the chat says it
    questions = ("what shape?", "how many cats?", "what shape now?")
    records = [{"image": picture, "question": q} for q in questions]
    picky.checks = []
    assert answer_questions(picky, records, progress=False)[1] == [False, True, False]  # (answers, flags)
    assert picky.checks == ["picture", "question"] * 3  # once per question
    assert picky.encoded == 2  # the CLI's picture, then evaluate's: each picture encoded once


def test_a_facts_answer_that_failed_names_a_backend_for_any_photo():
    known = Known(False, False, own_kind=False)
    said = answer_router.from_facts("what is it?", None, known, "custom")
    assert said == "I can't look at this photo offline right now; the BLIP-2 backend can."
    assert answer_router.from_facts("what is it?", None, known, "blip2").endswith("the vLLM backend can.")


def test_labels_and_alternatives_come_from_the_registry():
    assert [backends.label(name) for name in backends.REGISTRY] == ["BLIP-2", "Custom", "vLLM"]
    assert backends.label("not-registered") == "not-registered"
    assert backends.others("custom") == ["BLIP-2", "vLLM"]
    assert [name for name, entry in backends.REGISTRY.items() if entry.any_photo] == ["blip2", "vllm"]
    assert backends.any_photo_instead("custom") == "BLIP-2"


@pytest.mark.parametrize("mode", ["question", "first"])
def test_the_custom_models_pinned_image_tokens_are_explicit_state(tiny_vlm, close_after, mode):
    backend = close_after(CustomBackend(tiny_vlm(), options=BackendOptions(image_tokens=mode)))
    patches = backend.encode_image(Image.new("RGB", (40, 40), "green"))
    state = backend.new_state()
    assert isinstance(state, CustomState) and state.pinned is None
    settings = GenerationSettings(max_new_tokens=3, plain=True)
    "".join(backend.stream(patches, "Question: what shape? Answer:", settings, state=state))
    if mode == "question":  # the image tokens follow every question: nothing pinned
        assert state.pinned is None
        return
    pinned = state.pinned
    assert pinned is not None and pinned.patches is patches
    assert pinned.tokens.shape[:2] == (1, backend.num_image_tokens)
    "".join(backend.stream(patches, "Question: what colour? Answer:", settings, state=state))
    assert state.pinned is pinned  # the follow-up kept the first question's tokens
    state.clear()  # a failed answer: the next turn starts afresh, pinning again
    assert state.pinned is None and state.kv is None
