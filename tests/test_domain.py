"""The custom model's domain (model/domain.py) and answer head export (model/answer_head.py)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqa_chat.model.answer_head import AnswerHead
from vqa_chat.model.domain import Domain, contrast, words

QUESTIONS = ["what shape is in the image?", "what color is the shape?", "is there a red shape?"]


def shape_picture(colour: str = "red") -> Image.Image:
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill=colour)
    return picture


def fitted() -> Domain:
    torch.manual_seed(0)
    pooled = torch.randn(200, 16)  # [n, C] the training pictures' pooled features
    return Domain.fit(pooled, [contrast(shape_picture())] * 200, QUESTIONS, margin=1.5)


def test_pictures_like_the_training_ones_are_in_and_others_out():
    domain = fitted()
    near = torch.randn(1, 4, 16) * 0.5  # [1, N, C]: patches whose mean is like the training pictures'
    far = torch.randn(1, 4, 16) + 40.0
    assert domain.image_in_domain(near, shape_picture("blue"))
    assert not domain.image_in_domain(far, shape_picture("blue"))
    flat = Image.new("RGB", (64, 64), (20, 20, 20))  # a finger over the lens: no shape at all
    assert not domain.image_in_domain(near, flat)


def test_questions_in_the_training_words_only():
    domain = fitted()
    assert domain.question_in_domain("What colour is the shape?")  # British spelling is the same word
    assert domain.question_in_domain("is there a red shape in the picture?")
    assert not domain.question_in_domain("how many people are there?")
    assert not domain.question_in_domain("what animal is this?")
    assert not domain.question_in_domain("?")
    assert words("What's the grey shape?") == ["what", "is", "the", "gray", "shape"]


def test_domain_and_answer_head_survive_save_and_load(tmp_path):
    domain = fitted()
    domain.save(str(tmp_path / "domain.json"))
    loaded = Domain.load(str(tmp_path / "domain.json"))
    pooled = torch.randn(3, 16)
    assert torch.allclose(loaded.image_distance(pooled), domain.image_distance(pooled))
    assert loaded.vocabulary == domain.vocabulary

    torch.manual_seed(0)
    head = AnswerHead(["circle", "red", "yes"], dim=8, last=True).eval()
    head.save(str(tmp_path))
    again = AnswerHead.load(str(tmp_path))
    tokens = torch.randn(1, 5, 8)  # [1, Q, D]
    assert again.top_k(tokens, 5) == head.top_k(tokens, 5)
    top = head.top_k(tokens, 2)
    assert len(top) == 2 and top[0][1] >= top[1][1] and np.isclose(sum(p for _, p in head.top_k(tokens)), 1)
    assert AnswerHead.load(str(tmp_path / "nothing")) is None
