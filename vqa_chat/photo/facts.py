"""Photo facts: what offline parts can say about a real photo (labels, text, people, colours, light, codes).

Computed once per image by `photo_facts`, from parts that ship inside PyPI wheels and load once per process:
EfficientNet-Lite0's ImageNet head (labels.py), RapidOCR (ocr.py), libfacedetection's face CNN (people.py),
colour names, light, sharpness and text polarity (looks.py), OpenCV's QR and barcode readers (codes.py).
Every part works on one copy of the photo whose long side is at most WORK_SIDE px, which bounds the time.
The answers built from these facts live in answers.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from vqa_chat.photo import labels, looks, ocr, people
from vqa_chat.photo.codes import Code, find_codes

__all__ = ["Code", "Label", "PhotoFacts", "Region", "TextLine", "cut_edges", "cut_off", "find_codes",
           "photo_facts", "working_copy"]

WORK_SIDE = 1024  # the long side (px) of the copy every part works on (never enlarged)
EDGE = 0.01  # a text box this close to an edge (fraction of the side) counts as cut off
CLIPPED = 0.3  # ... and so does one nearer to an edge than this share of its letter height


@dataclass
class Label:  # one ImageNet guess
    name: str  # readable, e.g. "Egyptian cat"
    probability: float  # 0..1
    group: str | None  # a plain word for its family when there is one: "cat", "dog", "bird", "car"...


@dataclass
class TextLine:
    text: str  # the line as read
    confidence: float  # 0..1
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width/height


@dataclass
class Region:  # a face or a person
    kind: str  # "face" or "person"
    where: str  # "left", "centre" or "right" (of the picture)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width/height
    sure: bool = True  # counted as a person; False: weaker evidence, answered with "may" (people.py)


@dataclass
class PhotoFacts:
    width: int  # pixels
    height: int  # pixels
    labels: list[Label]  # ImageNet top-5, most likely first
    text: list[TextLine]  # in reading order (top to bottom, left to right)
    people: list[Region]  # faces and people merged into one list of persons (one Region per person)
    colours: list[tuple[str, float]]  # dominant colour names, centre-weighted share 0..1, largest first
    brightness: float  # mean luminance 0..1
    light: str  # "very dark", "dark", "normal", "bright", "very bright"
    sharpness: float  # variance of the Laplacian on a fixed-size grey copy
    blurry: bool  # sharpness below the blur threshold
    text_cut_off: bool  # some text runs off the picture's edge (text_edges says which)
    codes: list[Code]  # QR codes and barcodes found
    seconds: float  # time to compute
    text_edges: list[str] = field(default_factory=list)  # the edges text touches: left, right, top, bottom
    text_turn: int = 0  # degrees the picture was turned (counter-clockwise) to read its text upright
    light_text: bool = False  # the text is light on a dark ground (a lit screen or display)

    def to_json(self) -> dict:
        return asdict(self)


def working_copy(image: Image.Image) -> Image.Image:
    """An RGB copy whose long side is at most WORK_SIDE px."""
    rgb = image.convert("RGB")
    rgb.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    return rgb


def cut_edges(lines: list[TextLine], width: int = 1, height: int = 1) -> list[str]:
    """The picture's edges that some text runs off, in the order left, right, top, bottom: its box touches
    the edge, or ends nearer to it than CLIPPED x its letter height (the detector's box stops before a
    letter cut in half)."""
    touched = dict.fromkeys(("left", "right", "top", "bottom"), False)
    for x0, y0, x1, y1 in (line.box for line in lines):
        letter = min((x1 - x0) * width, (y1 - y0) * height)  # a line's short side is its letter height
        near_x, near_y = max(EDGE, CLIPPED * letter / width), max(EDGE, CLIPPED * letter / height)
        for edge, gap, near in (("left", x0, near_x), ("right", 1 - x1, near_x), ("top", y0, near_y),
                                ("bottom", 1 - y1, near_y)):
            touched[edge] = touched[edge] or gap < near
    return [edge for edge, hit in touched.items() if hit]


def cut_off(lines: list[TextLine], width: int = 1, height: int = 1) -> bool:
    """True when some text runs off the picture's edge (see cut_edges)."""
    return bool(cut_edges(lines, width, height))


def photo_facts(image: Image.Image, features: torch.Tensor | None = None) -> PhotoFacts:
    """All the facts about one photo (the parts are loaded on first use, once per process). `features`: the
    ImageNet head's input [1, 1280] when a backend's encoding of the photo holds it (imagenet_features of
    backends/): used instead of a second pass of the network when it saw the classifier's pixels
    (labels.reused)."""
    start = time.perf_counter()
    work = working_copy(image)
    rgb = np.asarray(work)
    probs = labels.reused(features, image.size)
    probs = labels.probabilities(work) if probs is None else probs
    reading = ocr.read(work)
    text = [TextLine(t, c, box) for t, c, box in reading.lines]
    edges = cut_edges(text, work.width, work.height)
    found = people.find_people(rgb, labels.animal_share(probs))
    persons = [Region(p.kind, people.where(p.box), p.box, p.sure) for p in found]
    level = looks.brightness(rgb)
    sharpness = looks.sharpness(rgb)
    return PhotoFacts(
        width=image.width, height=image.height,
        labels=[Label(name, p, group) for name, p, group in labels.top(probs)],
        text=text, people=persons, colours=looks.colours(rgb),
        brightness=level, light=looks.light(level),
        sharpness=sharpness, blurry=sharpness < looks.BLURRY_BELOW,
        text_cut_off=bool(edges), text_edges=edges, text_turn=reading.turn,
        light_text=bool(text) and looks.light_on_dark(rgb, [line.box for line in text]),
        codes=find_codes(rgb),
        seconds=time.perf_counter() - start,
    )
