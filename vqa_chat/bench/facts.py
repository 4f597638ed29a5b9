"""Photo facts speed:  python -m vqa_chat.bench.facts [--repeats 3] [--side 1024] [--threads N]

Times each part of vqa_chat.photo.facts (labels, OCR, people, looks, codes) and the whole `photo_facts`
call on scikit-image's sample photos (a test dependency: `pip install scikit-image`) resized so their long
side is --side px, after one warm-up call that loads the parts. Prints the median wall-clock seconds per
part and in total, over all photos and repeats, the median CPU seconds of the process (all its threads:
a figure that other work on a shared machine changes less) and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image

from vqa_chat.photo import facts, labels, looks, ocr, people

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "page", "motorcycle")  # skimage.data sample photos


def sample_photos(side: int) -> dict[str, Image.Image]:
    """skimage's sample photos as RGB pictures whose long side is `side` px."""
    from skimage import data  # a test dependency, imported only by this bench

    photos = {}
    for name in PHOTOS:
        pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        image = Image.fromarray(pixels).convert("RGB")
        scale = side / max(image.size)
        photos[name] = image.resize((round(image.width * scale), round(image.height * scale)),
                                    Image.Resampling.BICUBIC)
    return photos


def timed(fn, *args) -> tuple[tuple[float, float], object]:
    """((wall seconds, process CPU seconds), result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def measure(image: Image.Image) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each part on one photo, then of the whole photo_facts call."""
    work = facts.working_copy(image)
    rgb = np.asarray(work)
    seconds = {}
    seconds["labels"], probs = timed(labels.probabilities, work)
    seconds["ocr"], _ = timed(ocr.read_lines, work)
    seconds["people"], _ = timed(people.find_people, rgb, labels.animal_share(probs))
    seconds["looks"], _ = timed(lambda: (looks.colours(rgb), looks.brightness(rgb), looks.sharpness(rgb)))
    seconds["codes"], _ = timed(facts.find_codes, rgb)
    seconds["total"], _ = timed(facts.photo_facts, image)
    return seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.bench.facts", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per photo")
    p.add_argument("--side", type=int, default=1024, help="long side (px) the photos are resized to")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = sample_photos(args.side)
    facts.photo_facts(photos[PHOTOS[0]])  # warm-up: loads the classifier, OCR models and detectors
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for image in photos.values():
            for part, seconds in measure(image).items():
                runs.setdefault(part, []).append(seconds)
    print(f"photo facts on {len(photos)} skimage photos at {args.side} px, {args.repeats} runs each "
          f"(1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads)")
    print(f"{'part':<8} {'median s':>9} {'max s':>7} {'median CPU s':>13}")
    for part, values in runs.items():
        walls, cpus = [wall for wall, _ in values], [cpu for _, cpu in values]
        median = statistics.median
        print(f"{part:<8} {median(walls):>9.3f} {max(walls):>7.3f} {median(cpus):>13.3f}")


if __name__ == "__main__":
    main()
