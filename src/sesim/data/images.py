"""Reading images from disk: which files count, and how any mode becomes RGB in [-1, 1]."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from sesim.errors import DataError
from sesim.runtime import available_ram

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # what SeSim reads and writes
# What a folder of inputs may also hold (read as a single file is read; outputs stay the above).
READABLE_EXTENSIONS = (*IMAGE_EXTENSIONS, ".tif", ".tiff", ".gif")


def list_images(folder: str | Path, what: str = "images") -> list[Path]:
    """Image files directly in ``folder`` (sorted by name); a clear error when there are none."""
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"{what}: {folder} is a file; give the folder that holds the images")
    if not folder.is_dir():
        raise DataError(f"{what}: folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS)
    if not files:
        raise DataError(f"{what}: no images ({', '.join(READABLE_EXTENSIONS)}) in {folder}")
    return files


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit and float images are rescaled, alpha is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


# Bytes per pixel while an image is decoded and made RGB: up to 4 decoded bands (2-byte and
# 4-byte modes have one) plus the RGB copy.
DECODE_BYTES_PER_PIXEL = 7


_PIXEL_LIMIT = threading.Lock()


@contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Pillow refuses images above a fixed pixel count (a guard against decompression bombs);
    :func:`load_rgb` checks the size against the memory there is instead, so this lifts it while
    an image is opened (one thread at a time: the limit is Pillow's global, always restored)."""
    with _PIXEL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


@contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    """The image file at ``path``, opened lazily (its header read) without Pillow's pixel limit; a
    file Pillow cannot open or decode inside the block is a ``DataError`` naming it."""
    try:
        with _no_pixel_limit():
            opened = Image.open(path)
        with opened as image:
            yield image
    except DataError:  # the block's own answer (a ValueError too): as it is
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cannot read image {path}: {reason}") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; a truncated or non-image file raises ``DataError``,
    and so does one whose decoded pixels would not fit in the available memory (read from its
    header, before decoding). Any size that fits is read: large photos and orthophotos are
    translated in tiles, so Pillow's fixed decompression-bomb limit does not apply."""
    with _opened(path) as image:
        width, height = image.size
        needed, free = width * height * DECODE_BYTES_PER_PIXEL, available_ram()
        if free is not None and needed > free:
            raise DataError(
                f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels): decoding it needs "
                f"~{needed / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are available; downscale or split it first"
            )
        image.load()
        # A phone photo's pixels are stored sideways with an EXIF orientation tag: turn them
        # the way every viewer shows the photo (a no-op without the tag).
        return to_rgb(ImageOps.exif_transpose(image))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from an image file's header (its pixels are not decoded); ``DataError``
    when the file is not an image Pillow can open."""
    with _opened(path) as image:
        width, height = image.size
        # Stored sideways (EXIF orientation 5-8): shown turned. Only where the tag sits in the
        # header: Pillow decodes a whole PNG to look for one after its pixels.
        header_exif = image.format in ("JPEG", "MPO", "TIFF", "WEBP") or "exif" in image.info
        if header_exif and image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        return width, height


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` float tensor in ``[-1, 1]``."""
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return array.permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` tensor in ``[-1, 1]`` -> RGB PIL image."""
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, mode="RGB")


def image_grid(rows: Sequence[Sequence[Image.Image]], background: str = "white") -> Image.Image:
    """Paste images into one picture, row by row; each column is as wide as its widest image,
    each row as tall as its tallest (sample grids, the demo report, similarity sheets)."""
    widths = [max(row[c].size[0] for row in rows if c < len(row)) for c in range(max(map(len, rows)))]
    heights = [max(image.size[1] for image in row) for row in rows]
    sheet = Image.new("RGB", (sum(widths), sum(heights)), background)
    top = 0
    for row, height in zip(rows, heights, strict=True):
        left = 0
        for image, width in zip(row, widths, strict=False):
            sheet.paste(image, (left, top))
            left += width
        top += height
    return sheet


def same_size_batches(items: Iterable[T], size_of: Callable[[T], Hashable], batch_size: int) -> Iterator[list[T]]:
    """Consecutive items of one size (``size_of(item)``) in groups of at most ``batch_size``, in
    order: what can be stacked into one batch without resizing."""
    group: list[T] = []
    for item in items:
        if group and size_of(item) != size_of(group[0]):
            yield group
            group = []
        group.append(item)
        if len(group) == batch_size:  # yielded at once: nothing is decoded ahead of a full batch
            yield group
            group = []
    if group:
        yield group
