"""DRN-D-22 (Yu, Koltun, Funkhouser, CVPR 2017) as a Cityscapes segmenter: the network the field
runs on translated label -> photo images (FCN-score protocol of CUT / F-LSeSim at 256x128).

Module names follow the layout of the public ``drn_d_22_cityscapes.pth`` checkpoint (``base.N``
for the nine stages, ``seg`` for the 1x1 classifier, ``up`` for the fixed x8 upsampling), so that
file loads as is. The weights are the user's to supply; nothing is downloaded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Per-channel statistics of Cityscapes photos on the 0-1 scale (the segmenter's training input).
CITYSCAPES_MEAN = (0.290101, 0.328081, 0.286964)
CITYSCAPES_STD = (0.182954, 0.186566, 0.184475)


class BasicBlock(nn.Module):
    """Two dilated 3x3 convs with batch norm and a residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=dilation[0], dilation=dilation[0], bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation[1], dilation=dilation[1], bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


def _convs(c_in: int, c_out: int, count: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [
            nn.Conv2d(
                c_in if index == 0 else c_out, c_out, 3, stride if index == 0 else 1, dilation, dilation, bias=False
            ),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _blocks(c_in: int, c_out: int, count: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    first = (1, 1) if dilation == 1 else (dilation, dilation)
    layers = [BasicBlock(c_in, c_out, stride, first)]
    layers += [BasicBlock(c_out, c_out, dilation=(dilation, dilation)) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class DRNSegmenter(nn.Module):
    """DRN-D-22 with a 1x1 classifier and a fixed bilinear x8 transposed-conv upsampling.

    Input: ``(B, 3, H, W)`` images in ``[-1, 1]`` (normalised inside with the Cityscapes mean and
    std), ``H, W`` multiples of 8. Output: class logits ``(B, classes, H, W)``.
    """

    def __init__(self, classes: int = 19) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, 16, 7, padding=3, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.base = nn.Sequential(
            stem,
            _convs(16, 16, 1),
            _convs(16, 32, 1, stride=2),
            _blocks(32, 64, 2, stride=2),
            _blocks(64, 128, 2, stride=2),
            _blocks(128, 256, 2, dilation=2),
            _blocks(256, 512, 2, dilation=4),
            _convs(512, 512, 1, dilation=2),
            _convs(512, 512, 1),
        )
        self.seg = nn.Conv2d(512, classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)
        self.up.weight.data.copy_(_bilinear_kernel(16).expand(classes, 1, 16, 16))
        self.up.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / (module.kernel_size[0] ** 2 * module.out_channels)))
        self.register_buffer("mean", torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = ((images + 1) * 0.5 - self.mean) / self.std
        return self.up(self.seg(self.base(x)))


def _bilinear_kernel(size: int) -> Tensor:
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    return ramp[:, None] * ramp[None, :]
