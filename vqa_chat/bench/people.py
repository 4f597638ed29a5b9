"""People detectors compared:  python -m vqa_chat.bench.people [--detector NAME] [--list]

Runs each detector on the labelled set of vqa_chat/bench/people_set.py (54 photos made from photos inside
installed wheels; scikit-image is a test dependency) on the same working copy photo_facts uses, and prints
per detector: recall of "there is a person" on the clearly visible people and on all people photos,
precision, how many no-people photos got a person claimed (counted) or hinted, how many photos with a
clearly visible face got no evidence at all, count accuracy, how many people photos got more persons
(counted + hinted) than they hold, and the median wall-clock and CPU time per photo. A detector
"claims" a person when it counts one (sure); hints ("There may be ...") are counted apart.
The baselines are what people.py did before (Haar frontal face cascade, an eye inside the face, HOG bodies,
no person on an animal photo) and their parts alone.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from vqa_chat.bench.people_set import Sample, people_set
from vqa_chat.photo import facts, labels, people
from vqa_chat.photo.people import Person

Detector = Callable[[np.ndarray, float], list[Person]]


# --- baselines: OpenCV's cascades as people.py used them before ------------------------------------------
@functools.cache
def cascade(name: str) -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cv2.data.haarcascades + name)


def grey_copy(rgb: np.ndarray) -> np.ndarray:
    return cv2.equalizeHist(cv2.cvtColor(people.resized(rgb, 512), cv2.COLOR_RGB2GRAY))


def haar_faces(grey: np.ndarray, name: str = "haarcascade_frontalface_alt2.xml") -> list:
    smallest = max(20, round(min(grey.shape) / 14))
    return list(cascade(name).detectMultiScale(grey, 1.1, 5, minSize=(smallest, smallest)))


def has_eye(grey: np.ndarray, rect) -> bool:
    x, y, w, h = (int(v) for v in rect)
    upper = grey[y:y + h * 5 // 8, x:x + w]
    smallest, largest = max(4, w // 8), max(5, w // 2)
    eyes = cascade("haarcascade_eye_tree_eyeglasses.xml").detectMultiScale(
        upper, 1.1, 3, minSize=(smallest, smallest), maxSize=(largest, largest))
    return len(eyes) > 0


def sure(kind: str, boxes: list, grey: np.ndarray) -> list[Person]:
    gh, gw = grey.shape
    return [Person(kind, people.fraction(rect, gw, gh), True, 1.0) for rect in boxes]


def haar(rgb: np.ndarray, animal_share: float) -> list[Person]:
    grey = grey_copy(rgb)
    return sure("face", haar_faces(grey), grey)


def haar_eye(rgb: np.ndarray, animal_share: float) -> list[Person]:
    grey = grey_copy(rgb)
    return sure("face", [r for r in haar_faces(grey) if has_eye(grey, r)], grey)


def haar_profile(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """Frontal faces, then profile faces facing either way that overlap none of them."""
    grey = grey_copy(rgb)
    found = sure("face", haar_faces(grey), grey)
    gw = grey.shape[1]
    for flipped in (False, True):
        picture = cv2.flip(grey, 1) if flipped else grey
        for x, y, w, h in haar_faces(picture, "haarcascade_profileface.xml"):
            box = people.fraction((gw - x - w if flipped else x, y, w, h), gw, grey.shape[0])
            if not any(people.holds(p.box, box) or people.holds(box, p.box) for p in found):
                found.append(Person("face", box, True, 1.0))
    return found


@functools.cache
def hog_detector() -> cv2.HOGDescriptor:
    detector = cv2.HOGDescriptor()
    detector.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return detector


def body_boxes(rgb: np.ndarray, least: float) -> list[tuple[people.Box, float]]:
    """Upright bodies as (box, SVM weight) with weight >= `least`, from OpenCV's HOG people detector."""
    grey = grey_copy(rgb)
    gh, gw = grey.shape
    if gh < 128 or gw < 64:  # the HOG window is 64 x 128 px
        return []
    found, weights = hog_detector().detectMultiScale(grey, winStride=(8, 8), scale=1.1)
    return [(people.fraction(rect, gw, gh), float(w)) for rect, w in zip(found, np.ravel(weights))
            if w >= least]


def hog(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """HOG bodies with SVM weight >= 1.0, as people.py used them before."""
    return [Person("person", box, True, w) for box, w in body_boxes(rgb, least=1.0)]


def without_faces(bodies: list[Person], faces: list[Person]) -> list[Person]:
    """The bodies that hold none of the faces (a face and its body are one person)."""
    return [b for b in bodies if not any(people.holds(b.box, f.box) for f in faces)]


def before(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """people.py before: Haar face with an eye, or a HOG body without a face; nobody on animal photos."""
    if animal_share > people.ANIMAL_SHARE:
        return []
    found = haar_eye(rgb, animal_share)
    return found + without_faces(hog(rgb, animal_share), found)


def cnn(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """libfacedetection's faces (yuface) at its own threshold 0.5, all counted."""
    return [Person("face", box, True, score) for box, score in people.face_boxes(rgb, least=0.5)]


def chosen_hog(rgb: np.ndarray, animal_share: float) -> list[Person]:
    """The chosen detector, plus HOG bodies holding no face as hints (weight >= 0.8; none on an animal)."""
    found = people.find_people(rgb, animal_share)
    if animal_share > people.ANIMAL_SHARE:
        return found
    bodies = [Person("person", box, False, w) for box, w in body_boxes(rgb, least=0.8)]
    return found + without_faces(bodies, found)


DETECTORS: dict[str, Detector] = {
    "haar": haar, "haar+eye": haar_eye, "haar+profile": haar_profile, "hog": hog,
    "before (haar+eye+hog, animal filter)": before, "cnn (yuface)": cnn,
    "chosen + HOG hints": chosen_hog, "chosen (people.py)": people.find_people,
}


# --- the evaluation -------------------------------------------------------------------------------------
def prepared(samples: list[Sample]) -> list[tuple[Sample, np.ndarray, float]]:
    """Each sample's working copy (as photo_facts makes it) and its classifier's animal share."""
    out = []
    for sample in samples:
        work = facts.working_copy(sample.image)
        out.append((sample, np.asarray(work), labels.animal_share(labels.probabilities(work))))
    return out


def evaluate(detect: Detector, photos: list[tuple[Sample, np.ndarray, float]]) -> tuple[dict, list[str]]:
    """The figures for one detector, and one line per photo it got wrong."""
    rows, seconds, cpu, wrong = [], [], [], []
    for sample, rgb, animal in photos:
        start, start_cpu = time.perf_counter(), time.process_time()
        found = detect(rgb, animal)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        counted = sum(p.sure for p in found)
        rows.append((sample, counted, len(found) - counted))
        if counted != sample.count or len(found) > sample.count:
            wrong.append(f"{sample.name}: {sample.count} people, counted {counted}, "
                         f"{len(found) - counted} hint(s) ({sample.note})")
    with_people = [r for r in rows if r[0].count]
    clear = [r for r in with_people if r[0].clear]
    empty = [r for r in rows if not r[0].count]
    claimed = [r for r in rows if r[1]]
    figures = {
        "recall clear": sum(r[1] > 0 for r in clear) / len(clear),
        "recall all": sum(r[1] > 0 for r in with_people) / len(with_people),
        "precision": sum(r[0].count > 0 for r in claimed) / len(claimed) if claimed else 1.0,
        "claimed on empty": sum(r[1] > 0 for r in empty),
        "hinted on empty": sum(r[1] == 0 and r[2] > 0 for r in empty),
        "faces missed": sum(r[1] + r[2] == 0 for r in with_people if r[0].face),
        "over-counted": sum(r[1] + r[2] > r[0].count for r in with_people),
        "count exact": sum(r[1] == r[0].count for r in rows) / len(rows),
        "count exact clear": sum(r[1] == r[0].count for r in clear) / len(clear),
        "median ms": 1000 * statistics.median(seconds),
        "median CPU ms": 1000 * statistics.median(cpu),
        "n": (len(clear), len(with_people), len(empty), sum(r[0].face for r in with_people)),
    }
    return figures, wrong


def table(results: dict[str, dict]) -> str:
    """A Markdown table of the figures, one row per detector."""
    n_clear, n_people, n_empty, n_faces = next(iter(results.values()))["n"]
    head = (f"| detector | recall, clear ({n_clear}) | recall, all people ({n_people}) | precision "
            f"| claimed / hinted on no-people ({n_empty}) | faces with no evidence ({n_faces}) "
            f"| count exact, clear / all | over-counted with hints ({n_people}) | ms per photo (CPU ms) |")
    lines = [head, "| --- " * 9 + "|"]
    for name, f in results.items():
        lines.append(f"| {name} | {f['recall clear']:.2f} | {f['recall all']:.2f} | {f['precision']:.2f} "
                     f"| {f['claimed on empty']} / {f['hinted on empty']} | {f['faces missed']} "
                     f"| {f['count exact clear']:.2f} / {f['count exact']:.2f} | {f['over-counted']} "
                     f"| {f['median ms']:.0f} ({f['median CPU ms']:.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.bench.people", description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", action="append", choices=list(DETECTORS), help="only these (repeatable)")
    p.add_argument("--list", action="store_true", help="also list each detector's wrong counts")
    args = p.parse_args(argv)
    photos = prepared(people_set())
    for detect in DETECTORS.values():  # warm-up: loads the cascades, HOG and the CNN once
        detect(photos[0][1], photos[0][2])
    results, wrongs = {}, {}
    for name in args.detector or list(DETECTORS):
        results[name], wrongs[name] = evaluate(DETECTORS[name], photos)
    print(f"{len(photos)} photos (vqa_chat/bench/people_set.py), working copies of at most "
          f"{facts.WORK_SIDE} px; median wall-clock and process CPU ms per photo (1-min load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(table(results))
    if args.list:
        for name, wrong in wrongs.items():
            print(f"\n{name}: {len(wrong)} photos counted wrong")
            print("\n".join(f"  {line}" for line in wrong))


if __name__ == "__main__":
    main()
