"""Fit what a trained custom model needs beside its weights: its domain and its answer head.

    python -m vqa_chat.train.fit_domain --model assets/custom-model [--images 1500]

- domain.json (model/domain.py): the training pictures' feature statistics and question words, so the
  model can tell a photo of a cat, or "how many people are there?", from what it was trained on.
- answer_head.safetensors (model/answer_head.py): a classifier over the training answers on the frozen
  connector's image tokens (a linear probe), for the top-5 answers with their probabilities.
The training loop writes both for new runs; this command fits them for a model trained before they
existed (the bundled one). It prints how well the domain separates held-out easy-VQA pictures (which
must all stay in) from real photos and noise (which must all fall out).
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vqa_chat.chat.conversation import format_prompt
from vqa_chat.chat.images import load_image
from vqa_chat.data.datasets import load_easy_vqa
from vqa_chat.model.answer_head import AnswerHead
from vqa_chat.model.domain import FILE, Domain, contrast
from vqa_chat.model.vision_language_model import VisionLanguageModel

MARGIN = 6.0  # a picture is out of domain beyond 6x the largest distance of a training picture


@torch.no_grad()
def encode(model: VisionLanguageModel, paths: list[str], batch_size: int = 64) -> torch.Tensor:
    chunks = []
    for i in tqdm(range(0, len(paths), batch_size), desc="encoding pictures", unit="batch"):
        chunks.append(model.vision.encode([load_image(p) for p in paths[i : i + batch_size]]).half())
    return torch.cat(chunks)  # [n, N, C]


def other_pictures(size: int = 224) -> dict[str, Image.Image]:
    """Pictures that are not easy-VQA's: noise, a gradient, and scikit-image's photos when installed."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    pictures = {
        "noise": Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
        "gradient": Image.fromarray(np.stack([np.tile(ramp, (size, 1))] * 3, -1)),
        "black": Image.new("RGB", (size, size)),
        "grey": Image.new("RGB", (size, size), (128, 128, 128)),
    }
    try:
        from skimage import data
    except ImportError:
        return pictures
    for name in (
        "chelsea",
        "coffee",
        "astronaut",
        "rocket",
        "page",
        "text",
        "camera",
        "cat",
        "hubble_deep_field",
    ):
        array = getattr(data, name)()
        pictures[name] = Image.fromarray(array).convert("RGB")
    return pictures


def domain_from(pooled: torch.Tensor, paths: list[str], questions: list[str], margin=MARGIN) -> Domain:
    """The domain of training pictures `paths` (their pooled patch tokens [n, C]) and training questions."""
    return Domain.fit(pooled, [contrast(load_image(path)) for path in paths], questions, margin)


@torch.no_grad()
def image_tokens(model: VisionLanguageModel, features: torch.Tensor, prompts: list[str], batch: int = 256):
    out = [
        model.read_prompts(features[i : i + batch].float(), prompts[i : i + batch])[1].float().cpu()
        for i in range(0, len(prompts), batch)
    ]
    return torch.cat(out)  # [n, Q, D]


def fit_head(model, features, index, records, epochs: int = 30, seed: int = 0) -> tuple[AnswerHead, float]:
    """A linear probe on the frozen connector's image tokens; returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    prompts = [format_prompt([], r["question"]) for r in records]
    tokens = image_tokens(model, features[[index[r["image"]] for r in records]], prompts)  # [n, Q, D]
    targets = [r["answers"][0] for r in records]
    head = AnswerHead(sorted(set(targets)), model.cfg.lm_dim, last=model.cfg.mp_product)
    labels = head.labels(targets, "cpu")
    split = int(len(records) * 0.9)  # the last tenth is held out to report the probe's accuracy
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for epoch in range(epochs):
        order = torch.randperm(split)
        for i in range(0, split, 512):
            rows = order[i : i + 512]
            loss = torch.nn.functional.cross_entropy(head(tokens[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"head epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
    with torch.no_grad():
        accuracy = (head(tokens[split:]).argmax(-1) == labels[split:]).float().mean().item()
    return head.eval(), accuracy


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m vqa_chat.train.fit_domain", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", default="assets/custom-model", help="the model folder to write into")
    p.add_argument("--images", type=int, default=1500, help="training pictures to fit on")
    p.add_argument("--check", type=int, default=1000, help="held-out easy-VQA test pictures to check")
    p.add_argument("--margin", type=float, default=MARGIN, help="threshold = largest training distance x")
    args = p.parse_args(argv)
    start = time.monotonic()
    model = VisionLanguageModel.from_pretrained(args.model)
    train = load_easy_vqa("train")
    paths = sorted({r["image"] for r in train})
    random.Random(0).shuffle(paths)
    paths = sorted(paths[: args.images])
    features = encode(model, paths)  # [n, N, C]
    domain = domain_from(features.float().mean(1), paths, [r["question"] for r in train], args.margin)
    domain.save(os.path.join(args.model, FILE))
    print(
        f"domain: distance threshold {domain.threshold:.2f}, contrast floor {domain.min_contrast:.1f}, "
        f"{len(domain.vocabulary)} question words"
    )

    test_paths = sorted({r["image"] for r in load_easy_vqa("test")})[: args.check]
    test_features = encode(model, test_paths)
    inside = sum(domain.image_in_domain(f[None], load_image(p)) for f, p in zip(test_features, test_paths))
    largest = domain.image_distance(test_features.float().mean(1)).max()
    print(f"held-out easy-VQA pictures in domain: {inside}/{len(test_paths)}, largest distance {largest:.1f}")
    for name, picture in other_pictures().items():
        patches = model.vision.encode([picture])
        distance = domain.image_distance(patches.mean(1))[0].item()
        verdict = "in domain (!)" if domain.image_in_domain(patches, picture) else "out of domain"
        print(f"  {name:12s} distance {distance:10.2f}  contrast {contrast(picture):6.1f}  {verdict}")

    index = {path: i for i, path in enumerate(paths)}
    records = [r for r in train if r["image"] in index]
    random.Random(1).shuffle(records)
    head, accuracy = fit_head(model, features, index, records)
    head.save(args.model)
    print(f"answer head: {len(head.answers)} answers, held-out probe accuracy {accuracy:.4f}")
    print(f"done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
