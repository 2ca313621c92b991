"""Translating an image too large for memory in overlapping tiles, without seams.

A tile's edge lacks the context its neighbours give it, so tiles overlap, and each output pixel
is a weighted mean of the tiles that cover it, with weights that ramp linearly to zero towards a
tile's inner edges (never at the image's own border). Memory is that of one tile plus the output.

What tiles cannot reproduce exactly: every instance norm of the generator normalises a tile with
the tile's own mean and variance, where the whole image would use the image's. Large tiles keep
the difference small (the automatic choice takes the largest tile that fits). Image-wide
statistics gathered in extra passes were tried and rejected: a pass fixes one more norm layer
but puts the later ones further off, so only one pass per norm layer (23 for the paper's
generator) would be exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

MULTIPLE = 4  # the generator's input sides must be multiples of 4; so are tile sizes and positions


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile positions along one side, evenly spread: multiples of 4, first at 0, last flush with
    the end, neighbours sharing at least ``overlap`` pixels."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    spacing = (length - tile) / (count - 1)
    return [round(i * spacing / MULTIPLE) * MULTIPLE if i < count - 1 else length - tile for i in range(count)]


def fit_tile(height: int, width: int, largest: int) -> int:
    """The smallest tile side (a multiple of 4, at most ``largest``) that needs no more tiles than
    ``largest`` does: the same number of passes with the least overlap computed twice."""
    overlap = _overlap(largest, None)
    side = 16
    for length in (height, width):
        count = len(_starts(length, largest, overlap))
        need = math.ceil((length + (count - 1) * overlap) / count)
        side = max(side, need + -need % MULTIPLE)
    return min(largest, side)


def _ramp(size: int, overlap: int, fade_start: bool, fade_end: bool) -> Tensor:
    """Blend weights along one side of a tile: linear ramps over the overlap on inner edges."""
    weights = torch.ones(size)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if fade_start:
            weights[:overlap] = ramp
        if fade_end:
            weights[size - overlap :] = ramp.flip(0)
    return weights


@torch.no_grad()
def translate_tiled(
    run: Callable[[Tensor], Tensor],
    image: Tensor,
    tile: int,
    overlap: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Translate one ``(1, 3, H, W)`` image (sides multiples of 4) in ``tile x tile`` pieces.

    Args:
        run: the generator call on a ``(1, 3, h, w)`` tile (autocast and style code applied).
        image: the padded input on the generator's device.
        tile: tile side in pixels (a multiple of 4, at least 16).
        overlap: pixels neighbouring tiles share at least (default ``tile // 4``, at most 128;
            rounded down to a multiple of 4).
        progress: called with 1 after each tile.

    Returns:
        ``(1, 3, H, W)`` float32 on the image's device.
    """
    height, width = image.shape[-2:]
    if tile % MULTIPLE or tile < 16:
        raise ValueError(f"tile: must be a multiple of {MULTIPLE} and at least 16, got {tile}")
    overlap = _overlap(tile, overlap)
    total = torch.zeros(1, 3, height, width, device=image.device)
    weight = torch.zeros(1, 1, height, width, device=image.device)
    h, w = min(tile, height), min(tile, width)
    for top, left in itertools.product(_starts(height, tile, overlap), _starts(width, tile, overlap)):
        out = run(image[..., top : top + h, left : left + w]).float()
        ramp_y = _ramp(h, overlap, top > 0, top + h < height).to(image.device)
        ramp_x = _ramp(w, overlap, left > 0, left + w < width).to(image.device)
        mask = ramp_y[:, None] * ramp_x[None, :]
        total[..., top : top + h, left : left + w] += out * mask
        weight[..., top : top + h, left : left + w] += mask
        if progress is not None:
            progress(1)
    return total / weight


def _overlap(tile: int, overlap: int | None) -> int:
    """Default: a quarter of the tile, at most 128 px (enough context to blend over)."""
    overlap = min(tile // 4, 128) if overlap is None else overlap
    overlap -= overlap % MULTIPLE
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap: must be in [0, {tile}), got {overlap}")
    return overlap


def count_tiles(height: int, width: int, tile: int, overlap: int | None = None) -> int:
    overlap = _overlap(tile, overlap)
    return len(_starts(height, tile, overlap)) * len(_starts(width, tile, overlap))


def bytes_per_pixel(generator: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Peak memory of a no-grad forward per input pixel, from the largest pair of consecutive
    activations on a small probe (with a factor 2 for the residual input kept alive, padding
    copies and the allocator)."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, inputs, output: sizes.append(inputs[0].numel() + output.numel()))
        for m in generator.modules()
        if not list(m.children())
    ]
    try:
        probe = torch.zeros(1, 3, 64, 64, device=device)
        with torch.no_grad():
            generator(probe)
    except TypeError:  # a generator that needs more than an image (multi-modal): no estimate
        return 0.0
    finally:
        for hook in hooks:
            hook.remove()
    element = torch.finfo(dtype).bits // 8
    return 2 * max(sizes, default=0) * element / (64 * 64)


def auto_tile(pixels_needed: float, free: int | None, per_pixel: float, largest: int = 4096) -> int | None:
    """A tile side (multiple of 64) whose translation fits in half the free memory, or ``None``
    when the whole image fits (or nothing is known about memory)."""
    if free is None or per_pixel <= 0:
        return None
    budget = 0.5 * free
    if pixels_needed * per_pixel <= budget:
        return None
    side = int((budget / per_pixel) ** 0.5)
    return max(64, min(largest, side - side % 64))


__all__ = ["auto_tile", "bytes_per_pixel", "count_tiles", "fit_tile", "translate_tiled"]
