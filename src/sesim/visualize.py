"""``sesim visualize``: what the structure loss sees. For query points, the similarity map of the
source image and of its translation, per tap, overlaid on the images side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sesim.data.images import load_rgb, to_image, to_tensor
from sesim.losses import self_similarity
from sesim.methods.structure import build_structure_loss
from sesim.training.checkpoint import load_checkpoint
from sesim.training.loop import load_generator


def similarity_overlay(image: Image.Image, similarity: np.ndarray, point: tuple[int, int]) -> Image.Image:
    """``similarity`` (h, w), any range, as a heat map over ``image``, the query point marked."""
    from matplotlib import colormaps

    low, high = float(similarity.min()), float(similarity.max())
    scaled = (similarity - low) / (high - low) if high > low else np.zeros_like(similarity)
    heat = Image.fromarray((colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8))
    blended = Image.blend(image.convert("RGB"), heat.resize(image.size, Image.BILINEAR), 0.6)
    draw, (x, y), r = ImageDraw.Draw(blended), point, max(3, image.size[0] // 64)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=(0, 255, 0), width=max(1, r // 2))
    return blended


@torch.no_grad()
def visualize(
    checkpoint: str | Path,
    image: str | Path,
    output: str | Path,
    points: list[tuple[int, int]] | None = None,
    num_points: int = 3,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a PNG grid: one row per (tap, point), columns source | translation; each tile
    ``size x size``. ``points`` are ``(x, y)`` pixels of the resized image; by default
    ``num_points`` are drawn at random (seeded)."""
    generator, config = load_generator(checkpoint)
    structure = build_structure_loss(config.loss).eval()
    if structure.heads is not None:  # LSeSim: the maps of the trained heads
        structure.heads.load_state_dict(load_checkpoint(checkpoint)["networks"]["heads"])
    if size % 4:
        raise ValueError(f"--size must be a multiple of 4, got {size}")
    source = to_tensor(load_rgb(image).resize((size, size), Image.BICUBIC))[None]
    translated = generator(source)
    if points is None:
        rng = np.random.default_rng(seed)
        points = [(int(x), int(y)) for x, y in rng.integers(size // 8, size - size // 8, (num_points, 2))]
    bad = [p for p in points if not (0 <= p[0] < size and 0 <= p[1] < size)]
    if bad:
        raise ValueError(f"--point {bad[0][0]},{bad[0][1]} lies outside the {size}x{size} image")
    pictures = [to_image(source[0]), to_image(translated[0])]
    features = [structure.features(source, grad=False), structure.features(translated, grad=False)]
    tiles = []
    for tap in structure.taps:
        for x, y in points:
            row = []
            for picture, feats in zip(pictures, features, strict=True):
                projected = structure.project(tap, feats[tap])
                _, _, h, w = projected.shape
                query = torch.tensor([min(h - 1, y * h // size) * w + min(w - 1, x * w // size)])
                similarity = self_similarity(projected, query, None, config.loss.normalize)[0, 0].view(h, w)
                row.append(similarity_overlay(picture, similarity.numpy(), (x, y)))
            tiles.append(row)
    sheet = Image.new("RGB", (2 * size, len(tiles) * size), "white")
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * size, r * size))
    draw = ImageDraw.Draw(sheet)
    for index, tap in enumerate(structure.taps):
        draw.text((4, index * len(points) * size + 4), f"{tap} (source | translation)", fill=(255, 255, 255))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(output)
    return output
