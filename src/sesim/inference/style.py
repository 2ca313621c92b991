"""The style code of a reference image (``sesim translate --style-from``) for a multi-modal
generator, taken the way training showed images to its style encoder: at the training scale, in
``crop_size`` views. The encoder ends in a global average pool, so the mean of the views' codes
is the whole image's style, and memory stays that of one batch of crops however large the image."""

from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor, nn

from sesim.config import DataConfig
from sesim.data.images import to_tensor


def training_scale(image: Image.Image, data: DataConfig) -> Image.Image:
    """``image`` resized as training resized images before cropping (no random crop, no flip):
    ``resize_and_crop`` to ``load_size`` square, ``zoom_and_crop`` short side to ``load_size``
    times the middle of ``zoom``, ``crop``/``none`` as it is; never smaller than one crop."""
    if data.preprocess == "resize_and_crop":
        image = image.resize((data.load_size, data.load_size), Image.BICUBIC)
    elif data.preprocess == "zoom_and_crop":
        scale = data.load_size * sum(data.zoom) / 2 / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    if min(image.size) < data.crop_size:
        scale = data.crop_size / min(image.size)
        image = image.resize(
            (max(data.crop_size, round(image.width * scale)), max(data.crop_size, round(image.height * scale))),
            Image.BICUBIC,
        )
    return image


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
    scale (see the module's docstring), in the generator's dtype."""
    image = training_scale(image, data)
    boxes = view_boxes(image.width, image.height, data.crop_size)
    dtype = next(generator.parameters()).dtype
    codes = []
    for start in range(0, len(boxes), batch_size):
        views = torch.stack([to_tensor(image.crop(box)) for box in boxes[start : start + batch_size]])
        codes.append(generator.encode_style(views.to(device, dtype)))
    return torch.cat(codes).mean(0, keepdim=True)
