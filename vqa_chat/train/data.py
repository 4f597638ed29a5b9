"""Training examples and the frozen encoder's feature cache.

An example is (image, prompt, target): the prompt is built from prompts/question.txt (or describe.txt),
the target is the answer or caption the loss is computed on. Because the vision encoder is frozen, its
patch tokens are computed once per image and kept (in memory and on disk), so CPU training only runs the
connector and the LM.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm import tqdm

from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.chat.images import load_image
from vqa_chat.data import datasets
from vqa_chat.data.datasets import EASY_VQA_COLORS, EASY_VQA_SHAPES, most_common
from vqa_chat.files import cache_dir
from vqa_chat.prompts import load_prompt


@dataclass
class Example:
    image: str  # image file path
    prompt: str  # full prompt text, e.g. "Question: what color is the shape? Answer:"
    target: str  # answer or caption the loss is computed on
    answer_type: str = "other"  # for per-type accuracy during training
    question: str = ""  # the question alone (prompt = the question template around it)


def with_past_turn(example: Example, others: list[Example], rng) -> Example:
    """The same example as a follow-up: one earlier question-answer turn about the same image first,
    formatted exactly as the chat formats conversations (`Question: q1 Answer: a1 Question: q2 Answer:`)."""
    candidates = [o for o in others if o.question != example.question]
    if not candidates:
        return example
    past = rng.choice(candidates)
    prompt = format_prompt([Turn(past.question, past.target)], example.question)
    return Example(example.image, prompt, example.target, example.answer_type, example.question)


def load_split(dataset: str, split: str, data_dir: str = "") -> list[dict]:
    """VQA records (`datasets.VQARecord`) or image-caption records (`captions.CaptionRecord`)."""
    return datasets.load(dataset, split, data_dir)


def easy_vqa_attributes(qas: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(colour, shape) of one easy-VQA image, read from its questions and answers."""
    shape = colour = None
    for question, answer in qas:
        words = question.rstrip("?").split()
        # "what shape is present?" -> circle; "what is the blue shape?" names the colour
        if answer in EASY_VQA_SHAPES:
            shape = answer
            if words[:3] == ["what", "is", "the"] and words[-1] == "shape" and len(words) == 5:
                colour = words[3]
        elif words[0] == "what" and "color" in words:  # "what color is the circle?" -> blue
            colour = answer
            shape = shape or next((w for w in words if w in EASY_VQA_SHAPES), None)
    return colour, shape


def easy_vqa_description(qas: list[tuple[str, str]]) -> str | None:
    """'A blue rectangle on a light background.' from one easy-VQA image's questions and answers."""
    colour, shape = easy_vqa_attributes(qas)
    return f"A {colour} {shape} on a light background." if shape and colour else None


def contrast_twin(question: str, answer: str, colour: str, shape: str, rng) -> tuple[str, str] | None:
    """The same yes/no question about another colour or shape, so its answer flips.

    easy-VQA's yes/no questions mostly name an absent colour or shape ("is there a red shape?" is "no" for
    7 of 8 images), so the question alone predicts the answer for most of them and a model can stop
    there. With a twin that names the image's own colour or shape (or, if it did, another one), the
    question alone no longer tells the answer: the model has to look.
    """
    if answer not in ("yes", "no"):
        return None
    words = question.rstrip("?").split()
    for i, w in enumerate(words):
        kind, truth = None, None
        if w in EASY_VQA_COLORS:
            kind, truth = EASY_VQA_COLORS, colour
        elif w in EASY_VQA_SHAPES:
            kind, truth = EASY_VQA_SHAPES, shape
        if kind and truth:
            other = truth if w != truth else rng.choice([k for k in kind if k != truth])
            twin = " ".join(words[:i] + [other] + words[i + 1 :]) + "?"
            return twin, "no" if answer == "yes" else "yes"
    return None


def build_examples(records: list[dict], describe: bool, contrast: bool = False, seed=0) -> list[Example]:
    """One example per question (or caption), plus, for easy-VQA if asked, one "describe" example per
    image and a contrast twin per yes/no question (`contrast_twin`)."""
    question = load_prompt("question")
    describe_question = load_prompt("describe")
    describe_prompt = question.format(question=describe_question)
    examples = []
    by_image = defaultdict(list)
    for r in records:
        if "caption" in r:  # image-caption pairs train the describe prompt
            examples.append(Example(r["image"], describe_prompt, r["caption"], "describe", describe_question))
            continue
        answer = most_common(r["answers"])
        examples.append(
            Example(r["image"], question.format(question=r["question"]), answer, r["answer_type"],
                    r["question"])
        )
        by_image[r["image"]].append((r["question"], answer))
    rng = random.Random(seed)
    for image, qas in by_image.items():
        text = easy_vqa_description(qas) if describe else None
        if text:
            examples.append(Example(image, describe_prompt, text, "describe", describe_question))
        colour, shape = easy_vqa_attributes(qas) if contrast else (None, None)
        for q, a in qas if colour and shape else ():
            twin = contrast_twin(q, a, colour, shape, rng)
            if twin:
                examples.append(Example(image, question.format(question=twin[0]), twin[1], "yes/no", twin[0]))
    return examples


class FeatureCache:
    """Patch tokens of every image, computed once with the frozen encoder, kept as fp16 on disk."""

    def __init__(self, vision, images: list[str], batch_size: int = 64):
        unique = sorted(set(images))
        key = json.dumps(
            [
                vision.cfg.vit_source,
                vision.cfg.vit_blocks,
                vision.cfg.vit_grid,
                vision.cfg.vit_image_size,
                vision.sha256,
                unique,
            ]
        )
        path = os.path.join(cache_dir(), "features", hashlib.sha256(key.encode()).hexdigest()[:16] + ".pt")
        self.index = {p: i for i, p in enumerate(unique)}
        if os.path.exists(path):
            self.features = torch.load(path)
            return
        chunks = []
        for i in tqdm(range(0, len(unique), batch_size), desc="encoding images", unit="batch"):
            images_ = [load_image(p) for p in unique[i : i + batch_size]]  # as the chat loads an upload
            chunks.append(vision.encode(images_).half().cpu())  # [b, N, C]
        self.features = torch.cat(chunks)  # [n_images, N, C]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(self.features, path + ".tmp")
        os.replace(path + ".tmp", path)

    def get(self, images: list[str]) -> torch.Tensor:
        return self.features[[self.index[p] for p in images]].float()  # [B, N, C]
