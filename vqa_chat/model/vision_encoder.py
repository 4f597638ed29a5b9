"""The frozen image encoder: PIL images -> patch tokens [B, N, C].

Two sources: the offline EfficientNet-Lite0 (several feature maps pooled to one grid and concatenated, so
both colour-rich early maps and semantic late maps reach the connector), or any transformers vision model
(ViT, CLIP vision, SigLIP) by hub id or folder, whose last hidden states (without CLS) are the patch tokens.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from vqa_chat.files import sha256
from vqa_chat.model.config import VLMConfig
from vqa_chat.model.efficientnet_lite import load_efficientnet_lite0, weights_path

EFFICIENTNET = "efficientnet-lite0"


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VLMConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.vit_source == EFFICIENTNET:
            self.net = load_efficientnet_lite0()
            self.processor = None
            self.dim = self.net.channels(cfg.vit_blocks)
            self.sha256 = sha256(weights_path())
        else:
            from transformers import AutoImageProcessor, AutoModel

            model = AutoModel.from_pretrained(cfg.vit_source)
            self.net = getattr(model, "vision_model", model)  # CLIPModel / SiglipModel hold a vision tower
            self.processor = AutoImageProcessor.from_pretrained(cfg.vit_source)
            self.dim = self.net.config.hidden_size
            self.sha256 = ""
            cfg.vit_grid = self.net.config.image_size // self.net.config.patch_size  # patches per side
        self.net.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> pixel tensor [B, 3, H, W] on the encoder's device."""
        if self.processor is not None:
            return self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        size = self.cfg.vit_image_size
        arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]
        pixels = torch.from_numpy(np.stack(arrays)).float().div(255)  # [B, H, W, 3]
        return pixels.permute(0, 3, 1, 2).to(self.device)  # [B, 3, H, W]

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.processor is not None:
            hidden = self.net(pixel_values=pixels).last_hidden_state.float()  # [B, (1 +) N, C]
            return hidden[:, -(self.cfg.vit_grid**2) :]  # [B, N, C]: drop a leading CLS token (ViT, CLIP)
        maps = self.net.features(pixels, self.cfg.vit_blocks)
        grid = self.cfg.vit_grid
        pooled = [F.adaptive_avg_pool2d(m, grid) for m in maps]  # each [B, C_i, grid, grid]
        x = torch.cat(pooled, dim=1)  # [B, C, grid, grid]
        return x.flatten(2).transpose(1, 2)  # [B, grid*grid, C]

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        return self(self.preprocess(images))  # [B, N, C]

    def head_features(self, patches: torch.Tensor) -> torch.Tensor | None:
        """EfficientNet's 1280 head channels averaged over the whole picture [B, 1280], read from patch tokens
        [B, N, C]: what its ImageNet classifier pools. None when the tokens do not hold exactly that: another
        encoder, no head tapped, or a head map that the grid pooling does not split into equal cells (then
        the mean of the cells is not the mean of the map)."""
        blocks, grid = self.cfg.vit_blocks, self.cfg.vit_grid
        if self.processor is not None or -1 not in blocks:
            return None
        side = self.cfg.vit_image_size
        for _ in range(5):  # the stem and four stride-2 stages, each ceil(side / 2) with their padding
            side = -(-side // 2)
        if side % grid:
            return None
        start = self.net.channels(blocks[: blocks.index(-1)])
        return patches[:, :, start : start + 1280].mean(1)
