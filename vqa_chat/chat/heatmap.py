"""Where the model looked: the Q-Former's cross-attention over the image patches, drawn over the image.

The backend computes the map (`Backend.attention_map`, [grid, grid] weights summing to 1):
- Custom model: averaged over heads, layers and queries, for the prompt of the answer (our Q-Former reads
  the question, so the map depends on it).
- BLIP-2: the Q-Former's cross-attention averaged over layers, heads and queries, without the vision
  encoder's CLS position, computed per call without changing the shared model (backends/blip2.py). BLIP-2's
  Q-Former does not read the question, so its map is the same for every question about an image.
- vLLM, and custom models whose connector has no cross-attention: not available (`capabilities.heatmap`).
Before any answer, the map is drawn for the backend's own `heatmap_prompt`.

`overlay(image, grid)` blends the map (bilinear upsampling, matplotlib's "inferno" colormap) over the image.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vqa_chat.backends.base import Backend
from vqa_chat.chat.conversation import Turn

ALPHA = 0.55  # weight of the heatmap in the blend
SIDE = 512  # the heatmap picture's longest side


def attention_map(backend: Backend, image: Image.Image, prompt: str, image_embeds=None) -> torch.Tensor:
    """[grid, grid] attention for `prompt` about `image` (ValueError, user-readable, when the backend's
    capabilities have no heatmap)."""
    if not backend.capabilities.heatmap:
        raise ValueError(f"the {backend.name or 'selected'} backend cannot show where it looked")
    return backend.attention_map(image, prompt, image_embeds)


def overlay(image: Image.Image, grid: torch.Tensor | np.ndarray, alpha: float = ALPHA) -> Image.Image:
    """The image with the attention grid blended over it as a heatmap (RGB, same size as `image`)."""
    from matplotlib import colormaps

    heat = np.asarray(grid, dtype=np.float32)
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    small = Image.fromarray(np.uint8(heat * 255), mode="L")
    big = np.asarray(small.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    colored = colormaps["inferno"](big)[..., :3]  # [H, W, 3] in 0..1
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    blend = (1 - alpha) * base + alpha * colored
    return Image.fromarray(np.uint8(np.clip(blend, 0, 1) * 255), mode="RGB")


def describe_focus(grid: torch.Tensor | np.ndarray) -> str:
    """A short text alternative for the heatmap: which part of the picture got the most attention."""
    heat = np.asarray(grid, dtype=np.float32)
    rows, cols = heat.shape
    r, c = np.unravel_index(int(heat.argmax()), heat.shape)
    vertical = ["top", "middle", "bottom"][min(2, int((r + 0.5) / rows * 3))]  # thirds, by cell centre
    horizontal = ["left", "centre", "right"][min(2, int((c + 0.5) / cols * 3))]
    where = "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"
    return f"Heatmap of where the model looked; the brightest area is at the {where} of the picture."


def heatmap_image(
    backend: Backend, image: Image.Image, prompt: str, image_embeds=None
) -> tuple[Image.Image, str]:
    """(overlay picture, its text alternative) for `prompt` about `image`."""
    grid = attention_map(backend, image, prompt, image_embeds)
    return overlay(image, grid), describe_focus(grid)


def for_turn(
    backend: Backend, image: Image.Image, turn: Turn | None, image_embeds=None
) -> tuple[Image.Image, str]:
    """(overlay picture, its text alternative) of where the model looked for `turn`'s answer about `image`,
    or for the backend's own `heatmap_prompt` when no answer is given yet; at most SIDE pixels a side."""
    picture = image.copy()
    picture.thumbnail((SIDE, SIDE))
    prompt = turn.prompt if turn is not None else backend.heatmap_prompt
    overlaid, alt = heatmap_image(backend, picture, prompt, image_embeds)
    if turn is not None:
        alt += f' It is for the answer to "{turn.question}".'
    return overlaid, alt
