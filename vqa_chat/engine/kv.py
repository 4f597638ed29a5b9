"""KV caches as plain tensors, and the per-session prefix cache of a conversation.

A causal LM's key/value cache for B rows is, per layer, keys and values [B, H, T, d]. We keep it as a list
of (keys, values) pairs (`KV`) and wrap it in a transformers `DynamicCache` only to run the model. Rows of a
batch are left-padded: a row's real positions are the last `n` of the T columns (the attention mask has 0
on the padding), so rows can join and leave a running batch (see batching.py).

`PrefixCache` is what a chat session keeps between turns: the LM input it has already run, as input
embeddings [T, D], and the KV cache of exactly those positions. A new turn's input is compared with it
position by position (`common_prefix`), the cache is cut to the common part, and only the rest is run.
The KV of a position depends only on the input embeddings up to it (and its position), so comparing
embeddings, not token ids, is the exact reuse rule: it holds for image tokens too, whatever produced them.

Memory: SmolLM2-135M keeps 30 layers x (K + V) x 3 heads x 64 x 4 bytes = 45 KiB per position in fp32, so
a 5-turn easy-VQA conversation (~90 positions) holds ~4 MB. All sessions' caches together stay under
$VQA_CHAT_KV_BUDGET_MB (default 2048): past it, the least recently used caches are dropped, and those
sessions' next turns simply run their whole prompt again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from vqa_chat import settings
from vqa_chat.budget import Budget
from vqa_chat.engine.padding import pad_front

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [B, H, T, d]


def to_cache(kv: KV | None) -> DynamicCache:
    """A DynamicCache holding `kv` (an empty one for None), for `model(..., cache=...)`."""
    return DynamicCache() if not kv else DynamicCache(ddp_cache_data=kv)


def from_cache(cache: DynamicCache) -> KV:
    """The tensors of a DynamicCache; refuses layer types whose rows cannot be padded (sliding windows)."""
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        kinds = sorted({type(layer).__name__ for layer in cache.layers})
        raise TypeError(f"only full-attention DynamicLayer caches can be batched, not {kinds}")
    return [(layer.keys, layer.values) for layer in cache.layers]


def length(kv: KV | None) -> int:
    return 0 if not kv else kv[0][0].shape[2]


def nbytes(kv: KV | None) -> int:
    return 0 if not kv else sum(k.nbytes + v.nbytes for k, v in kv)


def take(kv: KV, row: int, last: int) -> KV:
    """Row `row`'s last `last` positions, as a batch of one: [1, H, last, d] per layer (a copy)."""
    T = kv[0][0].shape[2]
    return [(k[row : row + 1, :, T - last :].clone(), v[row : row + 1, :, T - last :].clone()) for k, v in kv]


def spans(kv: KV, row: int, parts: list[tuple[int, int]]) -> KV:
    """Row `row`'s columns [a, b) of each part, joined in order: [1, H, total, d] per layer (a copy).
    (A row of a batched prefill: its cached prefix and its new positions, without the padding around them.)"""
    return [(torch.cat([k[row : row + 1, :, a:b] for a, b in parts], dim=2),
             torch.cat([v[row : row + 1, :, a:b] for a, b in parts], dim=2)) for k, v in kv]  # fmt: skip


def head(kv: KV, n: int) -> KV:
    """The first `n` positions of every row (cutting a cache back to a common prefix)."""
    return [(k[:, :, :n], v[:, :, :n]) for k, v in kv]


def select(kv: KV, rows: list[int], drop_front: int = 0) -> KV:
    """Keep `rows` of the batch, and drop `drop_front` leading columns (padding no row needs any more)."""
    index = torch.tensor(rows, device=kv[0][0].device)
    return [(k.index_select(0, index)[:, :, drop_front:], v.index_select(0, index)[:, :, drop_front:])
            for k, v in kv]  # fmt: skip


def stack(parts: list[KV | None], lengths: list[int]) -> KV:
    """Left-pad caches of single rows (or batches) to the longest and stack them on the batch axis.

    `parts[i]` has `lengths[i]` columns (None: one row with none); the result has max(lengths) columns, zeros
    in front of shorter ones (padding.pad_front). At least one part must be a cache.
    """
    total = max(lengths)
    like = next(part for part in parts if part)
    out = []
    for layer in range(len(like)):
        k0 = like[layer][0]  # [b, H, n, d]
        empty = k0.new_zeros(1, k0.shape[1], 0, k0.shape[3])  # a row with no columns yet
        pairs = [part[layer] if part else (empty, empty) for part in parts]
        keys = torch.cat([pad_front(k, total, dim=2) for k, _ in pairs])  # [B, H, total, d]
        values = torch.cat([pad_front(v, total, dim=2) for _, v in pairs])
        out.append((keys, values))
    return out


@dataclass
class PrefixCache:
    """One session's reusable LM state for one backend: the inputs already run and their KV cache.

    Owned by the session (one per backend), read and replaced by the scheduler at the end of each answer.
    `embeds` [T, D] are the input embeddings of the T cached positions: the prompt of the last turn and the
    answer tokens that were fed back while generating it (all but the last one).
    """

    embeds: torch.Tensor | None = None  # [T, D]
    kv: KV | None = None  # per layer [1, H, T, d]
    hits: int = 0  # positions reused over this session's turns (for tests and the benchmark)

    def clear(self) -> None:
        """Forget everything (a failed answer may have left it half-updated); the next turn starts afresh."""
        self.embeds, self.kv = None, None
        BUDGET.stored(self)

    def common_prefix(self, embeds: torch.Tensor) -> int:
        """How many leading positions of `embeds` [T, D] are exactly the cached ones (KV reusable)."""
        if self.embeds is None or self.kv is None:
            return 0
        n = min(self.embeds.shape[0], embeds.shape[0])
        if n == 0:
            return 0
        cached = self.embeds[:n].to(embeds.device, embeds.dtype)
        same = (cached == embeds[:n]).all(dim=-1)  # [n]
        return n if bool(same.all()) else int((~same).nonzero()[0, 0])

    def reuse(self, embeds: torch.Tensor) -> tuple[KV | None, int]:
        """(KV of the reusable prefix of `embeds` [T, D], its length), keeping >= 1 position to run."""
        n = min(self.common_prefix(embeds), embeds.shape[0] - 1)
        if n <= 0:
            return None, 0
        self.hits += n
        return head(self.kv, n), n

    @property
    def nbytes(self) -> int:
        return nbytes(self.kv) + (0 if self.embeds is None else self.embeds.nbytes)

    def store(self, embeds: torch.Tensor, kv: KV) -> None:
        self.embeds, self.kv = embeds.detach(), kv
        BUDGET.stored(self)

    def drop(self) -> None:
        """Forget the KV (what the budget needs back; a backend's own state beside it stays): the next turn
        runs its whole prompt."""
        self.embeds, self.kv = None, None


BUDGET = Budget(limit_from=lambda: settings.read().kv_budget_mb * 2**20)  # $VQA_CHAT_KV_BUDGET_MB
