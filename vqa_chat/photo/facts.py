"""Photo facts: what offline parts can say about a real photo (labels, text, people, colours, light, codes).

Computed once per image by `photo_facts`, from parts that ship inside PyPI wheels and load once per process:
EfficientNet-Lite0's ImageNet head (labels.py), RapidOCR (ocr.py), libfacedetection's face CNN (people.py),
colour names, light, sharpness and text polarity (looks.py), OpenCV's QR and barcode readers (codes.py).
Every part works on one copy of the photo whose long side is at most WORK_SIDE px, which bounds the time.
The answers built from these facts live in answers.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from vqa_chat.photo import labels, looks, ocr, people
from vqa_chat.photo.codes import Code, find_codes

__all__ = ["Code", "Label", "PhotoFacts", "Region", "TextLine", "cut_edges", "cut_off", "find_codes",
           "photo_facts", "working_copy"]

WORK_SIDE = 1024  # the long side (px) of the copy every part works on (never enlarged)
EDGE = 0.01  # a text box this close to an edge (fraction of the side) counts as cut off


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
    text_cut_off: bool  # some text touches the picture's edge
    text_edges: list[str]  # the edges text touches: "left", "right", "top", "bottom"
    text_turn: int  # degrees the picture was turned (counter-clockwise) to read its text upright
    light_text: bool  # the text is light on a dark ground (a lit screen or display)
    codes: list[Code]  # QR codes and barcodes found
    seconds: float  # time to compute

    def to_json(self) -> dict:
        return asdict(self)


def working_copy(image: Image.Image) -> Image.Image:
    """An RGB copy whose long side is at most WORK_SIDE px."""
    rgb = image.convert("RGB")
    rgb.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    return rgb


def cut_edges(lines: list[TextLine]) -> list[str]:
    """The picture's edges that some text box touches, in the order left, right, top, bottom."""
    boxes = np.asarray([line.box for line in lines], dtype=float).reshape(-1, 4)
    touched = {"left": boxes[:, 0] < EDGE, "right": boxes[:, 2] > 1 - EDGE, "top": boxes[:, 1] < EDGE,
               "bottom": boxes[:, 3] > 1 - EDGE}
    return [edge for edge, hits in touched.items() if hits.any()]


def cut_off(lines: list[TextLine]) -> bool:
    """True when some text box touches the picture's edge."""
    return bool(cut_edges(lines))


def photo_facts(image: Image.Image) -> PhotoFacts:
    """All the facts about one photo (the parts are loaded on first use, once per process)."""
    start = time.perf_counter()
    work = working_copy(image)
    rgb = np.asarray(work)
    probs = labels.probabilities(work)
    reading = ocr.read(work)
    text = [TextLine(t, c, box) for t, c, box in reading.lines]
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
        text_cut_off=cut_off(text), text_edges=cut_edges(text), text_turn=reading.turn,
        light_text=bool(text) and looks.light_on_dark(rgb, [line.box for line in text]),
        codes=find_codes(rgb),
        seconds=time.perf_counter() - start,
    )
