"""int8 dynamic quantization of a language model on the CPU, and how many weight bytes a token reads.

`quantize_int8(lm)` swaps every `nn.Linear` of the LM (attention, MLP and the output head) for
`torch.ao.nn.quantized.dynamic.Linear`: weights stored as int8 with one scale per output channel,
activations quantized on the fly with one scale per input tensor, int8 x int8 -> int32 matmuls
(fbgemm/onednn kernels).

One scale per tensor is why only decoding runs in int8 (`int8_decoder`): a prefill tensor holds the whole
prompt, and its largest activations set the scale for every token. Measured on the bundled model: fully
int8, 3 of 30 easy-VQA answers right instead of 28 (the MLPs' down-projections hurt most). A decode step's
tensor holds one new text token per chat, so there one scale per tensor is (nearly) one per token. The
prompt is prefilled by the fp32 LM; the int8 copy shares its embedding table.

torch 2.13 still ships `torch.ao.quantization.quantize_dynamic` (deprecated in favour of torchao's
`quantize_`, which needs an extra package and targets GPUs first), so we use it and silence its notice.
The input embedding table stays fp32 (a lookup reads one row per token). On GPUs use bitsandbytes
(`--quantize 8bit|4bit`) instead: there int8 is a memory saver, not a speed-up.

Decoding one token at batch size 1 reads every weight once, so memory bandwidth bounds its speed:
    tokens/s <= bandwidth (bytes/s) / `weight_bytes_per_token(lm)` (bytes)
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn


def quantize_int8(lm: nn.Module) -> nn.Module:
    """Quantize `lm`'s Linear layers to int8 in place (CPU only); returns it."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if any(p.device.type != "cpu" for p in lm.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU only")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per.*")
        quantize_dynamic(lm, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return lm


def int8_decoder(lm: nn.Module) -> nn.Module:
    """An int8 copy of `lm` for decode steps; its input embedding table is `lm`'s own, not a copy.

    Each Linear is quantized straight from `lm`'s (deepcopy finds the int8 layer in its memo instead of
    copying the fp32 one), so no fp32 copy of the LM is ever made: for BLIP-2's OPT-2.7B that is 10.6 GB."""
    import copy

    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    memo = {id(p): p for p in lm.get_input_embeddings().parameters()}  # deepcopy reuses these as they are
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per.*")
        for m in lm.modules():
            if type(m) is nn.Linear:
                m.qconfig = per_channel_dynamic_qconfig  # what from_float reads
                memo[id(m)] = QLinear.from_float(m)
                del m.qconfig
    return copy.deepcopy(lm, memo=memo)


def is_int8(lm: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return any(isinstance(m, QLinear) for m in lm.modules())


def weight_bytes_per_token(lm: nn.Module) -> int:
    """Bytes of weights one decode step reads: every Linear (int8 or not) and norm, one embedding row."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    total = 0
    for m in lm.modules():
        if isinstance(m, QLinear):
            w, b = m.weight(), m.bias()  # int8 [out, in] (+ one fp scale and zero point per channel)
            total += w.numel() + w.shape[0] * 8 + (0 if b is None else b.numel() * b.element_size())
        elif isinstance(m, nn.Embedding):
            total += m.weight.shape[1] * m.weight.element_size()  # one row per token
        else:
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    return total  # a head tied to the embeddings is a Linear here: counted whole, as it is read whole
