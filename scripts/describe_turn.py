"""A Describe turn on real photos with the bundled custom backend: time, the labels' time, network passes.

    python scripts/describe_turn.py [--side 1024] [--repeats 5] [--threads N] [--agreement]

For scikit-image's chelsea and coffee (3:2), astronaut (square) and chelsea's centre square, resized so
the long side is --side px: each repeat opens a new ChatSession, uploads the photo (not timed) and times the
whole Describe turn (image encoding, the model's answer, the photo facts). Prints the median, min and max
turn time, the median time of the facts' ImageNet labels (labels.probabilities, the classifier's own pass,
or labels.from_features, the encoder's features reused) and the EfficientNet-Lite0 passes per turn, after
one warm-up turn that loads the facts' parts. `--agreement` instead compares, on the six sample photos
(python -m vqa_chat.bench.facts's), the labels the encoder's features would give for the whole photo (it
squeezes the picture to a square) with the classifier's own pass on its centre square. Runs against
whatever vqa_chat is on the path, so the same script times the code before a change (PYTHONPATH=<checkout>).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parent.parent))

from vqa_chat import backends  # noqa: E402
from vqa_chat.bench.facts import sample_photos  # noqa: E402
from vqa_chat.chat.session import ChatSession  # noqa: E402
from vqa_chat.engine.types import BackendOptions, GenerationSettings  # noqa: E402
from vqa_chat.model.efficientnet_lite import EfficientNetLite0  # noqa: E402
from vqa_chat.photo import labels  # noqa: E402

passes: list[str] = []  # one entry per EfficientNet-Lite0 pass
label_seconds: list[float] = []


def counted(fn):
    def run(*args, **kwargs):
        passes.append(fn.__name__)
        return fn(*args, **kwargs)
    return run


def timed(fn):
    def run(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        label_seconds.append(time.perf_counter() - start)
        return out
    return run


def photos(side: int, folder: str) -> dict[str, str]:
    """The photos as PNG files (the chat's upload path)."""
    found = sample_photos(side)
    chelsea = found["chelsea"]
    left = (chelsea.width - chelsea.height) // 2
    found["chelsea square"] = chelsea.crop((left, 0, left + chelsea.height, chelsea.height))
    paths = {}
    for name in ("chelsea", "coffee", "astronaut", "chelsea square"):
        paths[name] = os.path.join(folder, name.replace(" ", "_") + ".png")
        found[name].save(paths[name])
    return paths


def agreement(side: int) -> None:
    """How far the encoder's labels (the whole photo squeezed) are from the classifier's (its centre)."""
    from vqa_chat.model.config import VLMConfig
    from vqa_chat.model.vision_encoder import VisionEncoder
    from vqa_chat.photo.facts import working_copy

    encoder = VisionEncoder(VLMConfig())
    for name, image in sample_photos(side).items():
        own = labels.probabilities(working_copy(image))
        with torch.no_grad():
            reused = labels.from_features(encoder.head_features(encoder.encode([image]))[0])
        a, b = labels.top(own), labels.top(reused)
        shared = len({n for n, _, _ in a} & {n for n, _, _ in b})
        print(f"{name:11} {image.width}x{image.height} top-1 same {a[0][0] == b[0][0]!s:5} top-5 shared "
              f"{shared}/5  largest probability difference {abs(own - reused).max():.3f}  "
              f"own {a[0][0]} {a[0][1]:.2f}, encoder's {b[0][0]} {b[0][1]:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--agreement", action="store_true", help="compare the two ways to the labels instead")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.agreement:
        return agreement(args.side)
    EfficientNetLite0.features = counted(EfficientNetLite0.features)  # every pass goes through features()
    labels.probabilities = timed(labels.probabilities)
    if hasattr(labels, "from_features"):  # the code after the change
        labels.from_features = timed(labels.from_features)
    backends.get_backend("custom", BackendOptions(device="cpu"))
    settings = GenerationSettings()
    with tempfile.TemporaryDirectory() as folder:
        paths = photos(args.side, folder)
        warm = ChatSession()
        list(warm.describe(paths["chelsea"], "custom", settings))
        warm.close()
        print(f"Describe turn, bundled custom model, {args.repeats} runs per photo, long side {args.side} "
              f"px, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
        for name, path in paths.items():
            turns, runs = [], []
            label_seconds.clear()
            for _ in range(args.repeats):
                session = ChatSession()
                session.set_image(path)
                passes.clear()
                start = time.perf_counter()
                list(session.describe(None, "custom", settings))
                turns.append(time.perf_counter() - start)
                runs.append(len(passes))
                answer = session.conversation.turns[-1].answer
                session.close()
            ms = [1000 * t for t in turns]
            print(f"{name:15} turn median {statistics.median(ms):6.0f} ms "
                  f"(min {min(ms):.0f}, max {max(ms):.0f}); "
                  f"labels median {1000 * statistics.median(label_seconds):5.1f} ms; "
                  f"passes per turn {sorted(set(runs))}; 1-min load {os.getloadavg()[0]:.1f}")
            print(f"{'':15} {answer.splitlines()[0][:100]}")


if __name__ == "__main__":
    main()
