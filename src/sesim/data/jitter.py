"""Colour jitter drawn and applied on the images' device: LSeSim's augmented views.

torchvision's ``ColorJitter`` draws its factors and their order with the CPU's generator and
checks them on the host, which a CUDA graph cannot replay (it would keep the first draw forever).
Here the four factors are drawn with one device call from the device's default generator and
applied with tensor arithmetic only, in a fixed order (brightness, contrast, saturation, hue);
each adjustment is torchvision's (tests hold them equal for the same factors).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (factor * images + (1 - factor) * other).clamp(0, 1)


class ColourJitter(nn.Module):
    """``ColorJitter(brightness, contrast, saturation, hue)`` of ``(B, 3, H, W)`` images in
    ``[0, 1]``: one set of factors per call for the whole batch (as torchvision's v2 transform on a
    batch), drawn on the images' device; its constants are buffers, so nothing is copied from
    the host inside a step."""

    def __init__(self, brightness: float = 0.5, contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.3):
        super().__init__()
        low = (1 - brightness, 1 - contrast, 1 - saturation, -hue)
        width = (2 * brightness, 2 * contrast, 2 * saturation, 2 * hue)
        self.register_buffer("low", torch.tensor(low), persistent=False)
        self.register_buffer("width", torch.tensor(width), persistent=False)
        # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale; HSV -> RGB offsets of R, G, B.
        self.register_buffer("luma", torch.tensor((0.2989, 0.587, 0.114)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offsets", torch.tensor((5.0, 3.0, 1.0)).view(1, 3, 1, 1), persistent=False)

    def factors(self, groups: int = 1) -> Tensor:
        """``(groups, 4)``: brightness, contrast, saturation uniform in ``[1 - x, 1 + x]``, hue in ``[-h, h]``."""
        # Drawn in float32 whatever the weights' dtype: a float64 draw gives other numbers, and a
        # float64 reference run must see the float32 run's augmentations.
        return self.low + self.width * torch.rand(groups, 4, device=self.low.device, dtype=torch.float32)

    def forward(self, images: Tensor, factors: Tensor | None = None, groups: int = 1) -> Tensor:
        """Jitter ``(B, 3, H, W)`` images; ``groups`` consecutive equal parts of the batch each draw
        their own factors (``(groups, 4)``, or ``(4,)`` for one group, when given)."""
        factors = self.factors(groups) if factors is None else factors.view(-1, 4)
        images = images.unflatten(0, (factors.shape[0], -1))  # (groups, B / groups, 3, H, W)
        brightness, contrast, saturation, hue = factors.to(images.dtype).view(-1, 4, 1, 1, 1, 1).unbind(1)
        images = (images * brightness).clamp(0, 1)
        images = _blend(images, self._grayscale(images).mean((2, 3, 4), keepdim=True), contrast)
        images = _blend(images, self._grayscale(images), saturation)
        return self._shift_hue(images, hue).flatten(0, 1)

    def _grayscale(self, images: Tensor) -> Tensor:
        return (images * self.luma.to(images.dtype)).sum(-3, keepdim=True)

    def _shift_hue(self, images: Tensor, shift: Tensor) -> Tensor:
        """Rotate the hue by ``shift`` turns in HSV, as torchvision's ``adjust_hue``."""
        value, _ = images.max(-3, keepdim=True)
        low, _ = images.min(-3, keepdim=True)
        chroma = value - low
        saturation = chroma / torch.where(value == 0, torch.ones_like(value), value)
        safe = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
        red, green, blue = ((value - images) / safe).split(1, dim=-3)  # each channel's distance from the max
        red_max, green_max = images[..., :1, :, :] == value, images[..., 1:2, :, :] == value
        hue = torch.where(red_max, blue - green, torch.where(green_max, 2.0 + red - blue, 4.0 + green - red))
        hue = torch.remainder(hue / 6.0 + shift, 1.0)  # (..., 1, H, W), in turns
        # Channel n of (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6.
        k = torch.remainder(self.offsets.to(images.dtype) + 6.0 * hue, 6.0)
        return value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0, 1)
