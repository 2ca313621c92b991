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
from sesim.data.transforms import training_scale


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
