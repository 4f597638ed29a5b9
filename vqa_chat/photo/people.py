"""People in a photo: libfacedetection's CNN face detector (the `yuface` wheel, weights compiled in), each
face either a person counted (sure) or only a hint (not sure).

Chosen by measurement on a labelled set of photos (`python -m vqa_chat.bench.people`, README "Real photos,
offline"): OpenCV's Haar face cascade with an eye check, used before, lost a portrait once it was re-saved
as JPEG; the CNN finds every clearly visible face in the set, and faster. OpenCV's HOG people detector is
left out: as hints it found one of the two persons whose face was hidden, but added a false one beside five
portraits (on a helmet). Evidence is graded so that the answers can say what they
know and hedge the rest (people_answers.py):
- a face scoring >= SURE_FACE is a person counted; from FACE_HINT to SURE_FACE it is a hint (small and far
  away faces score there);
- when the ImageNet classifier puts most of its probability on animal classes, a face is only a hint and
  needs ANIMAL_FACE: a cheetah's face can score like a person's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import yuface

FACE_SIDE = 640  # the long side (px) of the copy the face CNN runs on (yuface warns above 960)
SURE_FACE = 0.8  # face score (0..1) from which a person is counted (a film creature's face scored 0.87)
FACE_HINT = 0.55  # face score from which a face is a hint (no-people, no-animal photos scored <= 0.61)
ANIMAL_SHARE = 0.5  # classifier probability on animal classes above which faces are only hints
ANIMAL_FACE = 0.9  # face score a hint needs on an animal photo (a close cheetah's scored 0.81)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width/height


@dataclass
class Person:
    kind: str  # "face" here; the bench's HOG baseline gives "person" (a body without a face)
    box: Box
    sure: bool  # counted as a person; False: a hint, said with "may"
    score: float  # the detector's score (faces: 0..1)


def resized(rgb: np.ndarray, side: int) -> np.ndarray:
    """A copy whose long side is at most `side` px (never enlarged)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def face_boxes(rgb: np.ndarray, least: float = FACE_HINT) -> list[tuple[Box, float]]:
    """Faces as (box, score 0..1) with score >= `least`, from libfacedetection's CNN."""
    small = resized(rgb, FACE_SIDE)
    h, w = small.shape[:2]
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its size warning: the copy is at most FACE_SIDE px
        scores, boxes, _ = yuface.detect(bgr, conf=least)
    return [(fraction(box, w, h), float(score) / 100) for score, box in zip(scores, boxes)]


def find_people(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """Persons from their faces, left to right: counted when sure, else hints."""
    animal = animal_share > ANIMAL_SHARE
    persons = [Person("face", box, score >= SURE_FACE and not animal, score)
               for box, score in face_boxes(rgb) if not animal or score >= ANIMAL_FACE]
    return sorted(persons, key=lambda person: person.box[0])


def where(box: Box) -> str:
    """"left", "centre" or "right" by the box's centre."""
    middle = (box[0] + box[2]) / 2
    return "left" if middle < 1 / 3 else "right" if middle > 2 / 3 else "centre"


def fraction(rect, width: int, height: int) -> Box:
    x, y, w, h = (float(v) for v in rect)
    return (x / width, y / height, (x + w) / width, (y + h) / height)


def holds(outer: Box, inner: Box) -> bool:
    """True when the centre of `inner` lies inside `outer`."""
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]
