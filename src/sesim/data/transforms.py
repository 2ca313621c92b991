"""Training-time geometry: resize, random crop, flip, all driven by an explicit generator."""

from __future__ import annotations

import torch
from PIL import Image

# ``data.preprocess`` -> what :func:`augment` does with it.
PREPROCESS: dict[str, str] = {
    "resize_and_crop": "resize to load_size x load_size, random crop_size crop (the paper's)",
    "crop": "random crop_size crop of the image as it is (smaller images upscaled)",
    "zoom_and_crop": "short side to load_size x U(zoom), aspect kept, random crop (single image)",
    "none": "the whole image, resized to multiples of 4",
}
Preprocess = str  # a key of PREPROCESS


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, high, (1,), generator=generator)) if high > 0 else 0


def multiple_of_4_size(size: tuple[int, int]) -> tuple[int, int]:
    """The nearest multiples of 4 (at least 4) of ``(width, height)``."""
    width, height = size
    return max(4, round(width / 4) * 4), max(4, round(height / 4) * 4)


def multiple_of_4(image: Image.Image) -> Image.Image:
    """Resize to the nearest multiples of 4 (the generator halves twice); no-op when already so."""
    size = multiple_of_4_size(image.size)
    return image if size == image.size else image.resize(size, Image.BICUBIC)


def training_scale(
    image: Image.Image, preprocess: Preprocess, load_size: int, crop_size: int, zoom_factor: float = 1.0
) -> Image.Image:
    """The resize before the crop: ``resize_and_crop`` to ``load_size`` square, ``zoom_and_crop``
    short side to ``load_size x zoom_factor`` (aspect kept), ``crop`` and ``none`` as it is; then
    upscaled, aspect kept, when a side is shorter than ``crop_size``."""
    if preprocess == "resize_and_crop":
        image = image.resize((load_size, load_size), Image.BICUBIC)
    if preprocess == "zoom_and_crop":
        width, height = image.size
        scale = load_size * zoom_factor / min(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC)
    width, height = image.size
    if min(width, height) < crop_size:
        scale = crop_size / min(width, height)
        image = image.resize((max(crop_size, round(width * scale)), max(crop_size, round(height * scale))))
    return image


def augment(
    image: Image.Image,
    generator: torch.Generator,
    preprocess: Preprocess = "resize_and_crop",
    load_size: int = 286,
    crop_size: int = 256,
    flip: bool = True,
    zoom: tuple[float, float] = (0.5, 1.0),
) -> Image.Image:
    """CycleGAN-style geometry: resize to ``load_size`` square, random ``crop_size`` crop, random
    horizontal flip. ``crop`` skips the resize (images smaller than the crop are upscaled);
    ``zoom_and_crop`` (single-image translation) scales the short side to ``load_size`` times a
    factor drawn from ``zoom`` (aspect kept) before the crop; ``none`` keeps the whole image
    (resized to multiples of 4)."""
    if preprocess in ("resize_and_crop", "crop", "zoom_and_crop"):
        factor = 1.0
        if preprocess == "zoom_and_crop":
            low, high = zoom
            factor = low + (high - low) * float(torch.rand(1, generator=generator))
        image = training_scale(image, preprocess, load_size, crop_size, factor)
        width, height = image.size
        left, top = _randint(width - crop_size + 1, generator), _randint(height - crop_size + 1, generator)
        image = image.crop((left, top, left + crop_size, top + crop_size))
    else:
        image = multiple_of_4(image)
    if flip and bool(torch.rand(1, generator=generator) < 0.5):
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return image
