"""The style code of a reference image (``sesim translate --style-from``) for a multi-modal
generator, taken the way training showed images to its style encoder: at the training scale, in
``crop_size`` views. The encoder ends in a global average pool, so the mean of the views' codes
is the whole image's style, and memory stays that of one batch of crops however large the image."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from sesim.config import DataConfig, stored_config
from sesim.data.images import load_rgb, to_tensor
from sesim.data.transforms import training_scale
from sesim.errors import ConfigError
from sesim.inference.loading import LoadedGenerator


def view_boxes(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    """``size`` square boxes covering a ``width x height`` image: a grid, the last row and
    column moved back inside the image (they overlap their neighbour instead of leaving a strip)."""

    def starts(length: int) -> list[int]:
        return sorted({*range(0, length - size + 1, size), length - size})

    return [(left, top, left + size, top + size) for top in starts(height) for left in starts(width)]


@torch.no_grad()
def reference_style(
    generator: nn.Module, image: Image.Image, data: DataConfig, device: torch.device | str, batch_size: int = 16
) -> Tensor:
    """``(1, style_dim)``: the mean style code of ``image``'s ``crop_size`` views at the training
    scale (:func:`~sesim.data.transforms.training_scale`, ``zoom_and_crop`` at the middle of its
    zoom range), in the generator's dtype."""
    image = training_scale(image, data.preprocess, data.load_size, data.crop_size, sum(data.zoom) / 2)
    boxes = view_boxes(image.width, image.height, data.crop_size)
    dtype = next(generator.parameters()).dtype
    codes = []
    for start in range(0, len(boxes), batch_size):
        views = torch.stack([to_tensor(image.crop(box)) for box in boxes[start : start + batch_size]])
        codes.append(generator.encode_style(views.to(device, dtype)))
    return torch.cat(codes).mean(0, keepdim=True)


def style_codes(
    loaded: LoadedGenerator,
    device: torch.device | str,
    num_styles: int | None = None,
    seed: int | None = None,
    style_from: str | Path | None = None,
) -> Tensor | None:
    """The style codes ``sesim translate`` runs a multi-modal generator with: ``num_styles`` drawn
    from the prior (``seed``: 0 unless given), or the one of the image ``style_from``
    (:func:`reference_style`); ``None`` for neither."""
    if num_styles is None and style_from is None:
        return None
    generator = loaded.generator
    if not hasattr(generator, "style_dim"):
        raise ConfigError("--num-styles/--style-from need a multimodal checkpoint (method: multimodal)")
    if style_from is not None:
        data = stored_config(loaded.checkpoint, "the checkpoint").data
        return reference_style(generator, load_rgb(style_from), data, device)
    if num_styles < 1:
        raise ConfigError(f"--num-styles must be at least 1, got {num_styles}")
    return torch.randn(num_styles, generator.style_dim, generator=torch.Generator().manual_seed(seed or 0))
