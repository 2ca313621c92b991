"""``sesim visualize``: what the structure loss sees. For query points, the similarity map of the
source image and of its translation, per tap, overlaid on the images side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sesim.checkpoint import load_checkpoint
from sesim.config import stored_config
from sesim.data.images import IMAGE_EXTENSIONS, image_grid, load_rgb, to_image, to_tensor
from sesim.errors import ConfigError
from sesim.inference import load_generator
from sesim.losses import SpatialCorrelativeLoss, self_similarity
from sesim.outputs import check_output_file


def similarity_overlay(
    image: Image.Image, similarity: np.ndarray, point: tuple[int, int], low: float, high: float
) -> Image.Image:
    """``similarity`` (h, w) as a heat map over ``image`` on the scale ``[low, high]``, the query
    point marked with a green ring and cross."""
    from matplotlib import colormaps

    scaled = np.clip((similarity - low) / (high - low), 0, 1) if high > low else np.zeros_like(similarity)
    heat = Image.fromarray((colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8))
    blended = Image.blend(image.convert("RGB"), heat.resize(image.size, Image.BILINEAR), 0.6)
    draw, (x, y), r = ImageDraw.Draw(blended), point, max(4, max(image.size) // 48)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=(0, 255, 0), width=max(1, r // 3))
    draw.line((x - 2 * r, y, x - r, y), fill=(0, 255, 0))
    draw.line((x + r, y, x + 2 * r, y), fill=(0, 255, 0))
    return blended


def colour_scale(height: int, low: float, high: float, width: int = 70) -> Image.Image:
    """A vertical colour bar (high at the top) with its two end values."""
    from matplotlib import colormaps

    ramp = np.linspace(1, 0, max(2, height - 24))[:, None].repeat(14, axis=1)
    bar = Image.new("RGB", (width, height), "white")
    bar.paste(Image.fromarray((colormaps["inferno"](ramp)[..., :3] * 255).astype(np.uint8)), (4, 12))
    draw = ImageDraw.Draw(bar)
    draw.text((22, 8), f"{high:.3g}", fill=(0, 0, 0))
    draw.text((22, height - 22), f"{low:.3g}", fill=(0, 0, 0))
    return bar


def fit_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The image's size with its long side ``size`` and its aspect kept (sides multiples of 4)."""
    scale = size / max(width, height)
    return max(8, round(width * scale / 4) * 4), max(8, round(height * scale / 4) * 4)


@torch.no_grad()
def visualize(
    checkpoint: str | Path,
    image: str | Path,
    output: str | Path,
    points: list[tuple[int, int]] | None = None,
    num_points: int = 3,
    size: int = 256,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a PNG grid: one row per (tap, point), columns source | translation | colour scale.

    The image is resized so that its long side is ``size`` (aspect kept). ``points`` are ``(x, y)``
    pixels of the input image; by default ``num_points`` are drawn at random (seeded). Both maps
    of a row share one colour scale (the loss compares them), printed beside them.
    """
    output = Path(output)
    if output.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ConfigError(f"--out {output}: use an image file name ({', '.join(IMAGE_EXTENSIONS)})")
    check_output_file(output, image, "the input image", "--out", overwrite)
    stored = load_checkpoint(checkpoint)
    generator, _ = load_generator(checkpoint, checkpoint=stored)
    loss = stored_config(stored, str(checkpoint)).loss
    structure = SpatialCorrelativeLoss.from_config(loss).eval()
    if structure.heads is not None:  # LSeSim: the maps of the trained heads
        structure.heads.load_state_dict(stored["networks"]["heads"])
    if size % 4 or size < 8:
        raise ConfigError(f"--size must be a multiple of 4 of at least 8, got {size}")
    original = load_rgb(image)
    width, height = fit_size(*original.size, size)
    source = to_tensor(original.resize((width, height), Image.BICUBIC))[None]
    translated = generator(source)
    if points is None:
        rng = np.random.default_rng(seed)
        points = [
            (int(rng.integers(original.size[0] // 8, original.size[0] - original.size[0] // 8)),
             int(rng.integers(original.size[1] // 8, original.size[1] - original.size[1] // 8)))
            for _ in range(num_points)
        ]  # fmt: skip
    bad = [p for p in points if not (0 <= p[0] < original.size[0] and 0 <= p[1] < original.size[1])]
    if bad:
        raise ConfigError(
            f"--point {bad[0][0]},{bad[0][1]} lies outside the {original.size[0]}x{original.size[1]} image {image}"
        )
    scaled = [(x * width // original.size[0], y * height // original.size[1]) for x, y in points]
    pictures = [to_image(source[0]), to_image(translated[0])]
    features = [structure.features(source, grad=False), structure.features(translated, grad=False)]
    rows = []
    for tap in structure.taps:
        for x, y in scaled:
            maps = []
            for feats in features:
                projected = structure.project(tap, feats[tap])
                _, _, h, w = projected.shape
                query = torch.tensor([min(h - 1, y * h // height) * w + min(w - 1, x * w // width)])
                maps.append(self_similarity(projected, query, None, loss.normalize)[0, 0].view(h, w).numpy())
            low, high = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
            tiles = [similarity_overlay(p, m, (x, y), low, high) for p, m in zip(pictures, maps, strict=True)]
            rows.append((tiles, colour_scale(height, low, high)))
    sheet = image_grid([[*tiles, bar] for tiles, bar in rows])
    draw = ImageDraw.Draw(sheet)
    for index, tap in enumerate(structure.taps):
        draw.text((4, index * len(points) * height + 4), f"{tap} (source | translation)", fill=(255, 255, 255))
    output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(output)
    return output
