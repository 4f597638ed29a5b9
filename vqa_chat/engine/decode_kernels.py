"""Compiled matrix-vector products for the CPU's decode steps (torch.compile / inductor).

A decode step multiplies one new token per chat, a few rows, by every weight matrix of the LM: work bound by
how fast the weights stream from memory. MKL's GEMM reads them at ~10 GB/s on this 2-core machine, a third
of what a plain sum over a large tensor reads (~27-31 GB/s). Written as a broadcast multiply and a sum over
the input dimension, inductor generates a vectorised reduction, threaded over output rows, that streams a
weight at 19-28 GB/s (measured per shape: 1536x576 19 GB/s vs MKL 10; 576x1536 29 vs 12; the 49152x576 head
28 vs 10). It wins up to about 4 rows (8 rows: even; 16: MKL), so:

    `compile_decode_linears(lm)` gives every nn.Linear of `lm` whose weight is large enough to come from
    memory (>= MIN_WEIGHT elements; the tiny test models' weights sit in the cache and keep F.linear) a
    forward that sends rows <= MAX_ROWS without autograd to the compiled kernel; anything else (prefill,
    training, large batches) goes to F.linear, exactly as before.

Modules, weights (tied ones too) and state-dict keys stay as they are. One compilation per weight shape,
dynamic in the number of rows; `warm_up` runs them at load (~14 s the first time on a machine; 2.3 s
from inductor's on-disk cache). Without a working C++ compiler the first call fails: we log it once
and every layer keeps F.linear. Results equal F.linear's up to float rounding (sums in another order):
tests compare greedy answers.
"""

from __future__ import annotations

import logging
from itertools import product
from types import MethodType

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqa_chat.engine.threads import threads

log = logging.getLogger(__name__)
MAX_ROWS = 4  # decode rows (chats) up to which the compiled kernel beats MKL on this CPU
MIN_WEIGHT = 1 << 16  # weights with fewer elements (256 kB in fp32) are cache-resident: F.linear is fine
_failed: list[BaseException] = []  # the compiler's error, once it has failed (then nobody tries again)


@torch.compile(dynamic=True)
def _matvec(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x[:, None, :] * weight[None]).sum(-1)  # [N, 1, in] * [1, out, in] -> [N, out]


def matvec(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """x [N, in] @ weight [out, in].T with the compiled kernel -> [N, out]; None once the compiler failed."""
    if _failed:
        return None
    try:
        # Inputs of one kind, or dynamo compiles a variant per kind (limit 8): a plain weight tensor (it
        # keeps a Parameter's shape static), a fresh copy of the few input rows (no view offsets or strides),
        # inference-mode dispatch and one thread (in a worker thread two are no faster than one).
        with threads(1), torch.inference_mode():
            return _matvec(x.clone(), weight.detach())
    except Exception as e:  # no C++ compiler, or inductor cannot build here: F.linear from now on
        _failed.append(e)
        log.warning("compiled decode kernels unavailable (%s); decoding with F.linear", e)
        return None


def _decode_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear.forward, with few-row no-grad calls on the compiled kernel."""
    rows = x.numel() // x.shape[-1]
    if rows <= MAX_ROWS and not torch.is_grad_enabled() and x.dtype == self.weight.dtype:
        y = matvec(x.reshape(rows, x.shape[-1]), self.weight)  # [N, out]
        if y is not None:
            y = y if self.bias is None else y + self.bias
            return y.reshape(*x.shape[:-1], y.shape[-1])  # [..., out]
    return F.linear(x, self.weight, self.bias)


def compile_decode_linears(lm: nn.Module) -> int:
    """Give `lm`'s large fp32 CPU nn.Linear layers the decode forward, in place (module types, weights and
    state-dict keys stay as they are); returns how many."""
    count = 0
    for m in lm.modules():
        w = getattr(m, "weight", None)
        if (
            type(m) is nn.Linear
            and w.device.type == "cpu"
            and w.dtype == torch.float32
            and w.numel() >= MIN_WEIGHT
        ):
            m.forward = MethodType(_decode_forward, m)
            count += 1
    return count


def compiled_linears(lm: nn.Module) -> list[nn.Linear]:
    return [m for m in lm.modules() if getattr(m.forward, "__func__", None) is _decode_forward]


def warm_up(lm: nn.Module) -> bool:
    """Compile the kernel for every weight shape of `lm` now, not on a user's first answer; False if the
    compiler is unavailable (then decoding uses F.linear)."""
    shapes = sorted({tuple(m.weight.shape) for m in compiled_linears(lm)})
    for (out_features, in_features), rows in product(shapes, (1, 2)):  # 1 and >1 compile apart
        if matvec(torch.zeros(rows, in_features), torch.zeros(out_features, in_features)) is None:
            return False
    return True


def plain_linears(lm: nn.Module) -> None:
    """Undo `compile_decode_linears`: `lm`'s Linears back on nn.Linear.forward (the bench's baseline)."""
    for m in compiled_linears(lm):
        del m.forward  # the instance's forward goes; the class's is found again

