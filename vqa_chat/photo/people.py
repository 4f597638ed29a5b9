"""People in a photo: OpenCV's Haar frontal-face cascade and HOG people detector, merged into persons.

Evidence is combined so that one person counts once and an animal's face is no person:
- faces come from the conservative `frontalface_alt2` cascade (the default one finds many "faces" on coins),
  and a face counts only when the eye cascade (with glasses) finds an eye in its upper part: the face
  cascade alone still finds a head on skimage's coins, which has no eyes there;
- a HOG person box counts only when it is confident (SVM weight >= HOG_MIN_WEIGHT) and holds no face
  already counted (a face and its body are one person);
- when the ImageNet classifier puts most of its probability on animal classes (a cat, a cheetah), no
  person is reported: Haar faces and HOG bodies on animals are the usual false alarms.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

DETECT_SIDE = 512  # the long side (px) of the grey copy both detectors run on
MIN_FACE = 1 / 14  # the smallest face side, as a fraction of the picture's short side
FACE_NEIGHBOURS = 5  # Haar minNeighbors: overlapping hits needed for a face
EYE_NEIGHBOURS = 3  # Haar minNeighbors for an eye inside a face
HOG_MIN_WEIGHT = 1.0  # HOG SVM score a person box needs (false alarms on skimage photos scored <= 0.86)
ANIMAL_SHARE = 0.5  # classifier probability on animal classes above which no person is reported

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width/height


@functools.cache
def detectors() -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier, cv2.HOGDescriptor]:
    """The face and eye cascades and the HOG people detector, loaded once per process."""
    faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    eyes = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye_tree_eyeglasses.xml")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return faces, eyes, hog


def has_eye(grey: np.ndarray, rect, eye_cascade: cv2.CascadeClassifier) -> bool:
    """True when an eye is found in the upper part of a face rectangle (x, y, w, h)."""
    x, y, w, h = (int(v) for v in rect)
    upper = grey[y:y + h * 5 // 8, x:x + w]
    smallest, largest = max(4, w // 8), max(5, w // 2)
    eyes = eye_cascade.detectMultiScale(upper, 1.1, EYE_NEIGHBOURS, minSize=(smallest, smallest),
                                        maxSize=(largest, largest))
    return len(eyes) > 0


def where(box: Box) -> str:
    """"left", "centre" or "right" by the box's centre."""
    middle = (box[0] + box[2]) / 2
    return "left" if middle < 1 / 3 else "right" if middle > 2 / 3 else "centre"


def find_people(rgb: np.ndarray, animal_share: float) -> list[tuple[str, Box]]:
    """Persons as (kind, box): kind "face" when a face was seen, "person" for a body without a face."""
    if animal_share > ANIMAL_SHARE:
        return []
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    grey = cv2.equalizeHist(grey)
    gh, gw = grey.shape
    face_cascade, eye_cascade, hog = detectors()
    smallest = max(20, round(min(gh, gw) * MIN_FACE))
    found = face_cascade.detectMultiScale(grey, 1.1, FACE_NEIGHBOURS, minSize=(smallest, smallest))
    persons = [("face", fraction(rect, gw, gh)) for rect in found if has_eye(grey, rect, eye_cascade)]
    if gh >= 128 and gw >= 64:  # the HOG window is 64 x 128 px
        bodies, scores = hog.detectMultiScale(grey, winStride=(8, 8), scale=1.1)
        for rect, score in zip(bodies, np.ravel(scores)):
            body = fraction(rect, gw, gh)
            has_face = any(holds(body, face) for kind, face in persons if kind == "face")
            if score >= HOG_MIN_WEIGHT and not has_face:
                persons.append(("person", body))
    return sorted(persons, key=lambda person: person[1][0])


def fraction(rect, width: int, height: int) -> Box:
    x, y, w, h = (float(v) for v in rect)
    return (x / width, y / height, (x + w) / width, (y + h) / height)


def holds(outer: Box, inner: Box) -> bool:
    """True when the centre of `inner` lies inside `outer`."""
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]
