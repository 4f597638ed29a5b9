"""The Q-Former connector (BLIP-2): learned queries read the frozen image through cross-attention.

Queries attend to each other (and, InstructBLIP-style, to the question's tokens) in every block, and to
the image patch tokens in every `mp_cross_every`-th block. Their outputs are projected into the LM's
embedding space and become the image tokens the frozen LM reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqa_chat.model.config import VLMConfig


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x, context, mask=None, return_weights=False):
        B, T, D = x.shape
        S, H = context.shape[1], self.heads
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)  # [B, H, T, d]
        k = self.k(context).view(B, S, H, D // H).transpose(1, 2)  # [B, H, S, d]
        v = self.v(context).view(B, S, H, D // H).transpose(1, 2)  # [B, H, S, d]
        bias = None if mask is None else (~mask[:, None, None, :]).float() * torch.finfo(q.dtype).min
        if return_weights:
            scores = q @ k.transpose(-1, -2) / (D // H) ** 0.5  # [B, H, T, S]
            weights = (scores if bias is None else scores + bias).softmax(-1)
            y = weights @ v  # [B, H, T, d]
        else:
            drop = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
            weights = None
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, D]
        return self.out(y), weights


class QFormerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.cross = cross
        if cross:
            self.ln2, self.cross_attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.ln3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x, image, n_queries, text_mask=None, return_weights=False):
        # x: [B, Q + L, D] = queries followed by (optional) question tokens; image: [B, N, D]
        mask = None
        if text_mask is not None:
            q_mask = torch.ones(x.shape[0], n_queries, dtype=torch.bool, device=x.device)
            mask = torch.cat([q_mask, text_mask.bool()], dim=1)  # [B, Q + L]
        h = self.ln1(x)
        x = x + self.self_attn(h, h, mask)[0]
        weights = None
        if self.cross:  # only the queries look at the image
            q = x[:, :n_queries]
            y, weights = self.cross_attn(self.ln2(q), image, return_weights=return_weights)
            x = torch.cat([q + y, x[:, n_queries:]], dim=1)
        x = x + self.mlp(self.ln3(x))
        return x, weights


class QFormer(nn.Module):
    def __init__(self, cfg: VLMConfig):
        super().__init__()
        D = cfg.mp_hidden
        self.queries = nn.Parameter(torch.randn(1, cfg.mp_num_queries, D) * 0.02)
        self.image_in = nn.Sequential(nn.LayerNorm(cfg.vit_dim), nn.Linear(cfg.vit_dim, D))
        self.image_pos = nn.Parameter(torch.zeros(1, cfg.vit_grid**2, D))  # where each patch is
        self.text_in = nn.Linear(cfg.lm_dim, D) if cfg.mp_question else None
        # position of each question token counted from the prompt's end (prompts are left-padded), so the
        # queries can tell the current question from earlier turns and "not" from where it stands
        self.text_pos = None
        if cfg.mp_question and cfg.mp_text_pos:
            self.text_pos = nn.Parameter(torch.zeros(1, cfg.mp_text_tokens, D))
        # question x image product: "is there a red shape?" asks whether the question's colour and the
        # image's agree, a product of the two. What the queries found (their mean after the blocks, where the
        # colour and the shape can already be read out linearly) times the question, through an MLP, becomes
        # one more image token (the last one: right before the answer with `lm_image_last`, and read
        # directly by the first training stage's classifier). README "How it got to 99 %" tells why.
        if cfg.has_product_token:
            self.image_gate = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, D))
            self.fused_mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
            self.text_pool = nn.Linear(D, 1)  # which of the question's tokens the product listens to
            # batch-normalised: what all prompts share ("Question: ... Answer:") is removed and the words
            # that differ remain at full scale
            self.text_gate = nn.Sequential(nn.BatchNorm1d(D), nn.Linear(D, D))
        else:
            self.image_gate = None
        self.blocks = nn.ModuleList(
            QFormerBlock(D, cfg.mp_heads, cfg.mp_dropout, cross=i % cfg.mp_cross_every == 0)
            for i in range(cfg.mp_layers)
        )
        self.ln_out = nn.LayerNorm(D)
        self.proj = nn.Linear(D, cfg.lm_dim)

    def pool_question(self, text, text_mask):
        """The question's tokens [B, L, D] -> one vector [B, D], weighted by learned scores."""
        scores = self.text_pool(text).squeeze(-1)  # [B, L]
        if text_mask is not None:
            scores = scores.masked_fill(~text_mask.bool(), torch.finfo(scores.dtype).min)
        return (scores.softmax(-1)[..., None] * text).sum(1)  # [B, D]

    def forward(self, image, text=None, text_mask=None, return_weights=False):
        """image: [B, N, C] patch tokens; text: [B, L, lm_dim] question embeddings (or None).

        Returns image tokens for the LM [B, Q, lm_dim] and, if asked, the cross-attention of the queries
        over the patches averaged over heads, layers and queries [B, N].
        """
        B, n_queries = image.shape[0], self.queries.shape[1]
        image = self.image_in(image) + self.image_pos  # [B, N, D]
        x = self.queries.expand(B, -1, -1)  # [B, Q, D]
        if self.text_in is not None and text is not None:
            text = self.text_in(text)  # [B, L, D]
            if self.text_pos is not None:
                text = text + self.text_pos[:, -text.shape[1] :]
            x = torch.cat([x, text], dim=1)  # [B, Q + L, D]
        else:
            text_mask = None
        maps = []
        for block in self.blocks:
            x, weights = block(x, image, n_queries, text_mask, return_weights)
            if weights is not None:
                maps.append(weights.mean(dim=(1, 2)))  # [B, N]
        x = x[:, :n_queries]  # [B, Q, D]
        if self.image_gate is not None and text is not None:
            question = self.text_gate(self.pool_question(text, text_mask))  # [B, D]
            fused = self.image_gate(x.mean(1)) * question  # [B, D]
            x = torch.cat([x, self.fused_mlp(fused)[:, None]], dim=1)  # [B, Q + 1, D]
        out = self.proj(self.ln_out(x))  # [B, Q(+1), lm_dim]
        attention = torch.stack(maps).mean(0) if maps else None  # [B, N]
        return out, attention
