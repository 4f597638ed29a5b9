"""Where the model looked: the Q-Former's cross-attention over the image patches, drawn over the image.

- Custom model: `CustomBackend.attention_map(patches, prompt)`, averaged over heads, layers and queries, for
  the prompt of the answer (our Q-Former reads the question, so the map depends on it).
- BLIP-2: the Q-Former's `cross_attentions` (transformers records them with `output_attentions=True`),
  averaged over layers, heads and queries; the vision encoder's CLS position is left out. BLIP-2's Q-Former
  does not read the question, so its map is the same for every question about an image.

`overlay(image, grid)` blends the map (bilinear upsampling, matplotlib's "inferno" colormap) over the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

ALPHA = 0.55  # weight of the heatmap in the blend


@torch.no_grad()
def blip2_attention_map(backend, image: Image.Image) -> torch.Tensor:
    """BLIP-2 Q-Former cross-attention over the vision patches: [grid, grid] weights summing to 1."""
    m = backend.model
    weight = m.vision_model.embeddings.patch_embedding.weight
    pixels = backend.processor.image_processor(images=[image], return_tensors="pt").pixel_values
    pixels = pixels.to(weight.device, weight.dtype)
    patches = m.vision_model(pixel_values=pixels).last_hidden_state  # [1, N, D]
    mask = torch.ones(patches.shape[:-1], dtype=torch.long, device=patches.device)
    queries = m.query_tokens.expand(1, -1, -1)  # [1, Q, Dq]
    config = m.qformer.config
    kept = config._attn_implementation
    config._attn_implementation = "eager"  # SDPA kernels return no attention weights
    try:
        out = m.qformer(
            query_embeds=queries,
            encoder_hidden_states=patches,
            encoder_attention_mask=mask,
            output_attentions=True,
            return_dict=True,
        )
    finally:
        config._attn_implementation = kept
    maps = [a for a in (out.cross_attentions or ()) if a is not None]  # each [1, heads, Q, N]
    if not maps:
        raise RuntimeError("this BLIP-2 did not return Q-Former cross-attentions")
    attention = torch.stack([a.float().mean(dim=(1, 2)) for a in maps]).mean(0)[0]  # [N]
    attention = attention[1:]  # drop the CLS position: the rest is the patch grid
    grid = math.isqrt(attention.numel())
    attention = attention[-grid * grid :]
    return (attention / attention.sum()).reshape(grid, grid).cpu()


def attention_map(backend, image: Image.Image, prompt: str, image_embeds=None) -> torch.Tensor:
    """[grid, grid] attention for `prompt` about `image` with either backend (ValueError if unsupported)."""
    if hasattr(backend, "attention_map"):  # the custom model: from its cached patches
        patches = image_embeds if image_embeds is not None else backend.encode_image(image)
        grid = backend.attention_map(patches, prompt)
        if grid is None:
            raise ValueError("this model's connector has no cross-attention to show")
        return grid
    if hasattr(backend, "processor") and hasattr(getattr(backend, "model", None), "qformer"):
        return blip2_attention_map(backend, image)
    raise ValueError(f"the {getattr(backend, 'name', '?')} backend cannot show where it looked")


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


def heatmap_image(backend, image: Image.Image, prompt: str, image_embeds=None) -> tuple[Image.Image, str]:
    """(overlay picture, its text alternative) for `prompt` about `image`."""
    grid = attention_map(backend, image, prompt, image_embeds)
    return overlay(image, grid), describe_focus(grid)
