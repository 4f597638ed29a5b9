"""engine/padding.py: the one left-padding helper, and the layouts its users build with it."""

from __future__ import annotations

import torch

from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.padding import left_mask, left_pad, pad_front


def test_left_pad():
    a, b = torch.ones(2, 4), torch.full((3, 4), 2.0)  # [T_i, D]
    embeds, mask = left_pad([a, b])
    assert embeds.shape == (2, 3, 4) and mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert embeds[0, 0].abs().sum() == 0 and torch.equal(embeds[0, 1:], a) and torch.equal(embeds[1], b)
    assert mask.dtype == torch.long and embeds.dtype == a.dtype


def test_left_pad_to_a_given_length_and_empty_rows():
    ids, mask = left_pad([torch.arange(2, 4), torch.arange(0, 0)], total=4)  # position ids [T_i]
    assert ids.tolist() == [[0, 0, 2, 3], [0, 0, 0, 0]] and ids.dtype == torch.long
    assert mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]


def test_left_mask():
    assert left_mask([1, 3, 0]).tolist() == [[0, 0, 1], [1, 1, 1], [0, 0, 0]]
    assert left_mask([2], total=4).tolist() == [[0, 0, 1, 1]]
    assert left_mask([0, 0], total=0).shape == (2, 0)


def test_pad_front():
    x = torch.randn(1, 2, 3, 4)
    padded = pad_front(x, 5, dim=2)
    assert padded.shape == (1, 2, 5, 4) and padded[:, :, :2].abs().sum() == 0
    assert torch.equal(padded[:, :, 2:], x)
    assert pad_front(x, 3, dim=2) is x


def test_kv_stack_equals_the_padding_written_out():
    """kv.stack pads with pad_front: the same tensors as padding each part by hand (the layout before)."""
    a = [(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))]
    batch = [(torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4))]  # a running batch of two rows
    stacked = kvlib.stack([a, None, batch], [3, 0, 5])
    for j in range(2):  # keys, values
        by_hand = torch.cat([
            torch.cat([torch.zeros(1, 2, 2, 4), a[0][j]], dim=2),
            torch.zeros(1, 2, 5, 4),
            batch[0][j],
        ])  # fmt: skip
        assert torch.equal(stacked[0][j], by_hand)
