"""A MUNIT-like multi-modal generator (Huang et al., ECCV 2018): a content encoder, a style
encoder and a decoder whose residual blocks are modulated by the style through AdaIN. The paper
added the spatially-correlative loss to MUNIT for night -> day and winter -> summer (that code was
never released); this is the one-direction A -> B version built here."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d((kernel - 1) // 2), nn.Conv2d(c_in, c_out, kernel, stride))


class ContentEncoder(nn.Module):
    """conv7, two stride-2 convs, residual blocks; instance norm throughout: ``(B, 4 ngf, H/4, W/4)``."""

    def __init__(self, ngf: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU()]
        for width in (ngf, 2 * ngf):
            layers += [_conv(width, 2 * width, 4, 2), nn.InstanceNorm2d(2 * width), nn.ReLU()]
        self.model = nn.Sequential(*layers, *[_Residual(4 * ngf, adain=False) for _ in range(blocks)])

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


class StyleEncoder(nn.Module):
    """Strided convs without normalisation, global average pooling, a 1x1 conv: ``(B, style_dim)``."""

    def __init__(self, ngf: int, style_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, ngf, 7), nn.ReLU()]
        width = ngf
        for _ in range(4):
            layers += [_conv(width, min(4 * ngf, 2 * width), 4, 2), nn.ReLU()]
            width = min(4 * ngf, 2 * width)
        self.model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, style_dim, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).flatten(1)


class _Residual(nn.Module):
    """Two 3x3 convs with instance norm (content encoder) or AdaIN (decoder)."""

    def __init__(self, width: int, adain: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.adain = _conv(width, width, 3), _conv(width, width, 3), adain
        self.params: Tensor | None = None  # (B, 4 * width): scale and shift of both norms, set per call

    def _norm(self, x: Tensor, index: int) -> Tensor:
        x = F.instance_norm(x)
        if not self.adain:
            return x
        width = x.shape[1]
        scale, shift = (
            self.params[:, 2 * index * width : (2 * index + 1) * width],
            self.params[:, (2 * index + 1) * width : (2 * index + 2) * width],
        )
        return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self._norm(self.conv1(x), 0))
        return x + self._norm(self.conv2(out), 1)


class MultimodalGenerator(nn.Module):
    """``generator(images, style)``: translate with a style code ``(B, style_dim)``; without one,
    the prior's mean (zeros) is used, so the plain call is deterministic (translate, export).

    Args:
        ngf: width of the first layer.
        blocks: residual blocks in the content encoder and in the decoder.
        style_dim: length of the style code (8 in MUNIT).
    """

    def __init__(self, ngf: int = 64, blocks: int = 4, style_dim: int = 8) -> None:
        super().__init__()
        self.style_dim, width = style_dim, 4 * ngf
        self.content_encoder = ContentEncoder(ngf, blocks)
        self.style_encoder = StyleEncoder(ngf, style_dim)
        self.residuals = nn.ModuleList([_Residual(width, adain=True) for _ in range(blocks)])
        self.mlp = nn.Sequential(nn.Linear(style_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 4 * width * blocks))  # fmt: skip
        up: list[nn.Module] = []
        for w in (width, width // 2):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                _conv(w, w // 2, 5),
                nn.GroupNorm(1, w // 2),
                nn.ReLU(),
            ]
        self.up = nn.Sequential(*up, _conv(width // 4, 3, 7), nn.Tanh())

    def decode(self, content: Tensor, style: Tensor) -> Tensor:
        params = self.mlp(style).chunk(len(self.residuals), dim=1)
        x = content
        for block, p in zip(self.residuals, params, strict=True):
            block.params = p
            x = block(x)
        return self.up(x)

    def encode_style(self, images: Tensor) -> Tensor:
        return self.style_encoder(images)

    def forward(self, images: Tensor, style: Tensor | None = None) -> Tensor:
        if style is None:
            style = images.new_zeros(images.shape[0], self.style_dim)
        return self.decode(self.content_encoder(images), style)
