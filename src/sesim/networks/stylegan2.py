"""StyleGAN2-style networks for single-image translation (as in SinCUT and the SeSim paper):
equalised-learning-rate convolutions, leaky ReLU with gain sqrt(2), blurred resampling and
residual blocks scaled by 1/sqrt(2); a fully convolutional discriminator (patch scores).

Widths: ``8 * ngf`` at full resolution, doubling per level up to ``32 * ngf`` (``ngf = 8`` in
the paper gives 64 / 128 / 256 channels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sesim.networks.layers import BlurDownsample, BlurUpsample


class EqualConv2d(nn.Module):
    """Conv with N(0, 1) weights scaled by ``1 / sqrt(fan_in)`` at run time (equalised learning rate)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale, self.padding = 1 / math.sqrt(c_in * kernel * kernel), kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class ResBlock(nn.Module):
    """``(main(x) + skip(x)) / sqrt(2)``; ``resample``: ``"down"``, ``"up"`` or ``None``."""

    def __init__(self, c_in: int, c_out: int, resample: str | None = None) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualConv2d(c_in, c_in, 3), EqualConv2d(c_in, c_out, 3)
        self.down = BlurDownsample(c_in) if resample == "down" else None
        self.up = BlurUpsample(c_in) if resample == "up" else None
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False) if c_in != c_out or resample else None

    def forward(self, x: Tensor) -> Tensor:
        if self.up is not None:
            x = self.up(x)
        out = _act(self.conv1(x))
        if self.down is not None:
            out, x = self.down(out), self.down(x)
        out = _act(self.conv2(out))
        shortcut = x if self.skip is None else self.skip(x)
        return (out + shortcut) / math.sqrt(2)


def _widths(ngf: int, levels: int) -> list[int]:
    return [min(32 * ngf, 8 * ngf * 2**level) for level in range(levels + 1)]


class StyleGAN2Generator(nn.Module):
    """Encoder (``from_rgb``, two down-sampling blocks), ``blocks`` residual blocks, decoder (two
    up-sampling blocks, ``to_rgb``, tanh). Input height and width: multiples of 4."""

    def __init__(self, ngf: int = 8, blocks: int = 6) -> None:
        super().__init__()
        widths = _widths(ngf, 2)
        self.from_rgb = EqualConv2d(3, widths[0], 1)
        self.encoder = nn.Sequential(ResBlock(widths[0], widths[1], "down"), ResBlock(widths[1], widths[2], "down"))
        self.middle = nn.Sequential(*[ResBlock(widths[2], widths[2]) for _ in range(blocks)])
        self.decoder = nn.Sequential(ResBlock(widths[2], widths[1], "up"), ResBlock(widths[1], widths[0], "up"))
        self.to_rgb = EqualConv2d(widths[0], 3, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = _act(self.from_rgb(images))
        return torch.tanh(self.to_rgb(self.decoder(self.middle(self.encoder(x)))))


class StyleGAN2Discriminator(nn.Module):
    """``from_rgb``, ``layers`` down-sampling residual blocks, a 3x3 conv and a 1x1 conv to one
    logit per patch: ``(B, 3, H, W) -> (B, 1, H / 2**layers, W / 2**layers)``."""

    def __init__(self, ndf: int = 8, layers: int = 3) -> None:
        super().__init__()
        widths = _widths(ndf, layers)
        self.from_rgb = EqualConv2d(3, widths[0], 1)
        self.blocks = nn.Sequential(*[ResBlock(widths[i], widths[i + 1], "down") for i in range(layers)])
        self.conv, self.out = EqualConv2d(widths[-1], widths[-1], 3), EqualConv2d(widths[-1], 1, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.blocks(_act(self.from_rgb(images)))
        return self.out(_act(self.conv(x)))
