"""Early-fusion connectors: every patch token is projected into the LM's embedding space.

`linear` is one matrix; `mlp` is Linear -> GELU -> Linear (LLaVA-1.5 style). The LM then reads
`[image tokens][question tokens]`, one image token per patch.
"""

from __future__ import annotations

import torch.nn as nn

from vqa_chat.model.config import VLMConfig


class ModalityProjector(nn.Module):
    def __init__(self, cfg: VLMConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.vit_dim)
        if cfg.mp_type == "linear":
            self.proj = nn.Linear(cfg.vit_dim, cfg.lm_dim)
        elif cfg.mp_type == "mlp":
            self.proj = nn.Sequential(
                nn.Linear(cfg.vit_dim, cfg.lm_dim), nn.GELU(), nn.Linear(cfg.lm_dim, cfg.lm_dim)
            )
        else:
            raise ValueError(f"unknown connector type {cfg.mp_type!r}")

    def forward(self, image, text=None, text_mask=None, return_weights=False):
        """image: [B, N, C] -> image tokens [B, N, lm_dim]; no attention map (every patch is a token)."""
        return self.proj(self.norm(image)), None


def build_connector(cfg: VLMConfig) -> nn.Module:
    if cfg.mp_type == "qformer":
        from vqa_chat.model.qformer import QFormer

        return QFormer(cfg)
    return ModalityProjector(cfg)
