"""Scene text: lines read by RapidOCR (PP-OCRv4 detection + recognition ONNX models inside its PyPI wheel).

The engine is built once per process. Detection runs on the picture as given (with limit_type "max" the
engine only shrinks pictures over 960 px), so `read` first scales the picture to OCR_SIDE: that bounds the
time. Spaces the recogniser drops between words ("histogramofgreyvalues") are left as read: restoring them
would need a word list, and a guess would change what the label says.

Turned text: RapidOCR reads a line whose box is tall as a line turned by 90 degrees, and its angle
classifier flips upside-down crops; but lines of a turned page come out in the wrong order, and many are
missed. So the angle classifier is asked about every detected box (cheap: 48 x 192 crops): when most of the
text is turned, the picture is read again turned upright (a second pass). When the first pass reads little
text although boxes were detected ("OK" turned sideways has a square box; sideways lines close together
merge into one box), a smaller copy (QUARTER_SIDE) is read turned a quarter: the angle classifier sets
upside-down lines right, so that one pass serves both quarter turns. The reading with the most confident
characters is kept; a lone character it reads is dropped (scikit-image's cat, cropped square, read as a
sideways "D" at 0.85 there). A picture with no text box costs nothing more; one with a stray box (fur, a
cup's rim) costs the small quarter-turned pass (`python -m vqa_chat.bench.facts` times it with the rest).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vqa_chat import settings
from vqa_chat.photo.layout import reading_order, turn_box, unturn

OCR_SIDE = 800  # the long side (px) the picture is scaled down to before detection
MIN_CONFIDENCE = 0.5  # lines the recogniser is less sure of are dropped
LONE_CHARACTER = 0.8  # a single character needs this confidence (fur and foam read as "D" or "O" at ~0.55)
THREADS = 1  # onnxruntime threads per model: a second one spun for ~2x the CPU time here (shared CPUs)
QUARTER_SIDE = 480  # the quarter-turned pass looks for lines merged into one box at this long side (px)
LITTLE_TEXT = 6  # fewer confident characters than this (with boxes detected): try the picture turned
TURNED_SHARE = 0.5  # more than this share of the boxes' area turned: read the picture again, upright
TALL = 1.5  # a box this many times taller than wide holds a turned line (RapidOCR's own rule)
KEEP_UPRIGHT = 0.8  # the upright pass is kept when it reads at least this share of the first pass's
FLIPPED = 0.9  # the angle classifier's score for "180" needed to call a crop upside down (RapidOCR's)

Line = tuple[str, float, tuple[float, float, float, float]]  # text, confidence, box as fractions


@dataclass
class Reading:
    lines: list[Line]  # in reading order, boxes on the picture as given
    turn: int  # degrees the picture was turned counter-clockwise to read it upright (0, 90, 180, 270)


@functools.cache
def engine():
    """The RapidOCR engine, loaded once per process."""
    settings.keep_onnxruntime_offline()  # offline and private: nothing of a user's run stays behind
    from rapidocr_onnxruntime import RapidOCR  # imported here: only photo facts need it

    # text_score 0: every detected box comes back, so a pass that reads little can tell "no text" from
    # "text it could not read"; MIN_CONFIDENCE is applied here, in `_pass`
    return RapidOCR(det_limit_type="max", text_score=0.0, intra_op_num_threads=THREADS,
                    inter_op_num_threads=1)


def _scaled(image: Image.Image) -> Image.Image:
    rgb = image.convert("RGB")
    scale = min(1.0, OCR_SIDE / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    return rgb


def _pass(rgb: Image.Image) -> tuple[list[Line], list[np.ndarray]]:
    """One OCR pass: the confident lines (boxes as fractions of `rgb`) and every detected box's corners."""
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    result, _ = engine()(bgr)
    lines, corners = [], []
    for points, text, confidence in result or []:
        xy = np.asarray(points, dtype=np.float32)
        corners.append(xy)
        box = (float(xy[:, 0].min() / rgb.width), float(xy[:, 1].min() / rgb.height),
               float(xy[:, 0].max() / rgb.width), float(xy[:, 1].max() / rgb.height))
        text, confidence = text.strip(), float(confidence)
        if _kept(text, confidence):
            lines.append((text, confidence, box))
    return lines, corners


def _kept(text: str, confidence: float) -> bool:
    """A line worth reading out: confident, with a letter or digit in it (a flag's stars, a pattern's dots or
    a logo's shapes come back as "★★", "•" or "///": nothing a person would call text), a lone character only
    when very sure."""
    if confidence < MIN_CONFIDENCE or not any(ch.isalnum() for ch in text):
        return False
    return len(text) > 1 or confidence >= LONE_CHARACTER


def _crop(pixels: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The upright rectangle around a box's corners."""
    x0, y0 = np.floor(xy.min(axis=0)).astype(int)
    x1, y1 = np.ceil(xy.max(axis=0)).astype(int)
    return pixels[max(0, y0):y1, max(0, x0):x1]


def _score(lines: list[Line]) -> float:
    """Confident characters read: what a pass is judged by."""
    return sum(len(text) * confidence for text, confidence, _ in lines)


def text_turn(rgb: Image.Image, corners: list[np.ndarray]) -> int:
    """How far (degrees counter-clockwise) to turn the picture so that most of its text is upright, from
    the boxes' shapes (tall: turned 90 degrees) and RapidOCR's angle classifier on each box's crop."""
    pixels = np.asarray(rgb)
    crops, areas, tall = [], [], []
    for xy in corners:
        crop = _crop(pixels, xy)
        if crop.size == 0:
            continue
        tall.append(crop.shape[0] >= TALL * crop.shape[1])
        crops.append(np.ascontiguousarray(np.rot90(crop)[:, :, ::-1] if tall[-1] else crop[:, :, ::-1]))
        areas.append(crop.shape[0] * crop.shape[1])
    if not crops:
        return 0
    _, labels, _ = engine().text_cls(crops)
    votes = {0: 0.0, 90: 0.0, 180: 0.0, 270: 0.0}
    for is_tall, (label, score), area in zip(tall, labels, areas):
        flipped = label == "180" and score >= FLIPPED
        # a tall crop was turned a quarter counter-clockwise to be read: upright then means the text runs
        # top to bottom, which a quarter turn counter-clockwise of the picture sets upright too
        votes[(90 if is_tall else 0) + (180 if flipped else 0)] += area
    turn = max(votes, key=votes.__getitem__)
    return turn if votes[turn] > TURNED_SHARE * sum(votes.values()) else 0


def _turned(rgb: Image.Image, turn: int) -> tuple[list[Line], int]:
    """The lines read on the picture turned by `turn` degrees counter-clockwise, and the turn that sets
    them upright: the angle classifier reads an upside-down line either way, so when the turned picture's
    text still comes out upside down (a single word of symmetric letters can fool the first vote), its
    boxes are given on the picture turned the other way round."""
    turned = rgb.rotate(turn, expand=True)
    lines, corners = _pass(turned)
    if not lines or text_turn(turned, corners) != 180:
        return lines, turn
    other = (turn + 180) % 360
    return [(text, conf, turn_box(unturn(box, turn), other)) for text, conf, box in lines], other


def _quarter(rgb: Image.Image) -> tuple[list[Line], int]:
    """One pass on a smaller copy turned a quarter: it covers both quarter turns (see `_turned`)."""
    small = rgb.copy()
    small.thumbnail((QUARTER_SIDE, QUARTER_SIDE), Image.Resampling.BILINEAR)  # boxes are fractions: same
    return _turned(small, 90)


def read(image: Image.Image) -> Reading:
    """The text lines of a picture in reading order, read upright however the text is turned."""
    rgb = _scaled(image)
    lines, corners = _pass(rgb)
    best, turn = lines, 0
    upright = text_turn(rgb, corners) if corners else 0
    if upright:  # most text turned: read upright (lines in the right order), unless that reads much less
        again, angle = _turned(rgb, upright)
        if _score(again) >= KEEP_UPRIGHT * _score(best):
            best, turn = again, angle
    if corners and _score(best) < LITTLE_TEXT and upright not in (90, 270):  # boxes, little read: sideways?
        again, angle = _quarter(rgb)
        again = [line for line in again if len(line[0]) > 1]  # a lone letter found only turned: noise
        if _score(again) > _score(best):
            best, turn = again, angle
    ordered = reading_order(best)
    return Reading([(text, conf, unturn(box, turn)) for text, conf, box in ordered], turn)


def read_lines(image: Image.Image) -> list[Line]:
    """Text lines as (text, confidence, box as fractions x0, y0, x1, y1), in reading order."""
    return read(image).lines
