"""Left padding, written once: rows of different lengths stacked so that they all end in the same column.

Every batch the engine runs is laid out this way: a row's real positions are its last `n` columns, zeros
fill the columns in front of them, and the attention mask has 0 there. Rows then share the column of their
newest position, so one decode step appends one column for all of them, and rows can join and leave a
running batch (batching.py). Used for input embeddings (`left_pad`: blip2's batched `generate`, prefill),
position ids (prefill), KV caches (`pad_front`: kv.stack) and attention masks (`left_mask`: prefill and the
scheduler's decode step).
"""

from __future__ import annotations

import torch


def left_mask(lengths: list[int], total: int | None = None, device=None) -> torch.Tensor:
    """Attention mask [B, total] (long): 1 on row i's last `lengths[i]` columns, 0 in front of them.
    `total` defaults to the longest row."""
    total = max(lengths) if total is None else total
    columns = torch.arange(total, device=device)  # [total]
    starts = total - torch.tensor(lengths, device=device)  # [B]: each row's first real column
    return (columns[None] >= starts[:, None]).long()  # [B, total]


def pad_front(x: torch.Tensor, total: int, dim: int = 0) -> torch.Tensor:
    """`x` with zeros in front along `dim`, up to `total` there (x itself when it is that long already)."""
    pad = total - x.shape[dim]
    if pad <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def left_pad(rows: list[torch.Tensor], total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack rows of different lengths, each [T_i, ...] (embeddings [T_i, D], position ids [T_i]), into
    [B, T, ...] padded on the left with zeros, and the matching attention mask [B, T] (0 on padding).
    T = `total`, else the longest row."""
    total = max(r.shape[0] for r in rows) if total is None else total
    like = rows[0]
    out = like.new_zeros(len(rows), total, *like.shape[1:])  # [B, T, ...]
    for i, row in enumerate(rows):
        if row.shape[0]:
            out[i, total - row.shape[0] :] = row
    return out, left_mask([r.shape[0] for r in rows], total, like.device)
