"""Prefill of many new answers in one forward of the causal LM (the scheduler's intake, batching.py).

Each answer brings its whole LM input [T_i, D] and the KV of the prefix its PrefixCache already holds
(n_i positions, kv.py). Only the s_i = T_i - n_i other positions are run, for all rows at once:

    row i = [padding][its n_i cached positions][padding][its s_i new positions]
    cached KV [B, H, N, d] left-padded to N = max n_i; new inputs [B, S, D] left-padded to S = max s_i;
    attention mask [B, N + S] with 0 on both paddings; position ids n_i .. T_i - 1 (padding: 0)

No row sees another's positions or any padding, so each row's KV and next-token logits are those of its
own forward up to float rounding (greedy answers are the same: tests/test_batching.py). One answer alone is
exactly the unpadded forward of its own new positions.
"""

from __future__ import annotations

import torch

from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.padding import left_mask, left_pad


def prefill(lm, inputs: list[torch.Tensor], cached: list[tuple[kvlib.KV | None, int]]):
    """`inputs[i]` [T_i, D]; `cached[i]`: (KV [1, H, n_i, d] of its first n_i positions or None, n_i).
    Returns (each row's KV [1, H, T_i, d] per layer, next-token logits [B, V])."""
    n = [k for _, k in cached]
    s = [e.shape[0] - k for e, k in zip(inputs, n, strict=True)]
    N, S, B = max(n), max(s), len(inputs)
    device = inputs[0].device
    x, new_mask = left_pad([e[k:] for e, k in zip(inputs, n, strict=True)], S)  # [B, S, D], [B, S]
    mask = torch.cat([left_mask(n, N, device), new_mask], dim=1)  # [B, N + S]
    positions, _ = left_pad([torch.arange(k, k + m, device=device) for k, m in zip(n, s, strict=True)], S)
    cache = kvlib.to_cache(kvlib.stack([kv for kv, _ in cached], n) if N else None)
    out = lm(inputs_embeds=x, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
             logits_to_keep=1)  # fmt: skip
    kv = kvlib.from_cache(out.cache)  # [B, H, N + S, d] per layer
    logits = out.logits[:, -1]  # [B, V]: every row's last column is its own last position
    if B == 1:
        return [kv], logits
    return [kvlib.spans(kv, i, [(N - n[i], N), (N + S - s[i], N + S)]) for i in range(B)], logits
