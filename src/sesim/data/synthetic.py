"""A synthetic two-domain set with known ground truth, for the demo and tests.

Domain A: flat label layouts (sand, and houses, fields and a river, each class with its own
shapes and one flat colour). Domain B: the same kind of layout *rendered*: per-class textures,
smooth shading and noise. For any layout both renderings exist, so a translation A -> B can be
scored against its ground truth; training sets use different layouts for A and B (unpaired).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NUM_CLASSES = 4
FLAT_COLOURS = np.array([[20, 20, 20], [230, 60, 50], [60, 200, 80], [70, 90, 240]], dtype=np.float64)


def render_layout(seed: int, size: int = 64) -> np.ndarray:
    """``(size, size)`` integer labels ``0 .. NUM_CLASSES - 1``; a pure function of ``seed``.

    Each class has its own shapes, as classes of real scenes do (and as an unpaired translator
    needs, to tell which class of one domain is which of the other without colour cues): roofs
    (1) are small rectangles, grass (2) rounded fields, water (3) a river across the image;
    the rest is sand (0).
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.int64)
    rows, cols = np.mgrid[0:size, 0:size] / size
    if rng.random() < 0.8:  # a river: a band of slowly varying height across the image
        centre, width, wave = rng.uniform(0.2, 0.8), rng.uniform(0.06, 0.12), rng.uniform(0, 2 * np.pi)
        labels[np.abs(rows - centre - 0.08 * np.sin(2 * np.pi * cols + wave)) < width] = 3
    for _ in range(rng.integers(1, 3)):  # fields
        cy, cx = rng.uniform(0.15, 0.85, size=2)
        ry, rx = rng.uniform(0.12, 0.22, size=2)
        labels[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1] = 2
    for _ in range(rng.integers(2, 5)):  # houses
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        ry, rx = rng.uniform(0.05, 0.1, size=2)
        labels[(np.abs(rows - cy) < ry) & (np.abs(cols - cx) < rx)] = 1
    return labels


def render_flat(labels: np.ndarray) -> np.ndarray:
    """Domain A: each class one flat colour. ``(H, W, 3)`` uint8."""
    return FLAT_COLOURS[labels].astype(np.uint8)


def render_textured(labels: np.ndarray, seed: int) -> np.ndarray:
    """Domain B: sand, water, grass and brick-like textures with shading and noise. ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed + 1_000_003)
    size_y, size_x = labels.shape
    rows, cols = np.mgrid[0:size_y, 0:size_x] / max(size_y, size_x)
    phase = rng.uniform(0, 2 * np.pi)
    textures = np.stack(
        [
            # 0: sand, warm and fine-grained
            np.stack([200 + 0 * rows, 180 + 0 * rows, 130 + 0 * rows], -1) + rng.normal(0, 10, (size_y, size_x, 1)),
            # 1: roofs, red-brown stripes
            np.stack([150 + 40 * np.sin(40 * rows + phase), 60 + 0 * rows, 40 + 0 * rows], -1),
            # 2: grass, green with blotches
            np.stack([40 + 0 * rows, 120 + 35 * np.sin(25 * cols + 13 * rows + phase), 40 + 0 * rows], -1),
            # 3: water, blue waves
            np.stack([30 + 0 * rows, 90 + 0 * rows, 170 + 45 * np.sin(30 * (rows + cols) + phase)], -1),
        ]
    )
    image = np.take_along_axis(textures, labels[None, :, :, None].repeat(3, -1), axis=0)[0]
    shading = 0.8 + 0.4 * (rng.uniform(0.3, 1) * rows + rng.uniform(0, 0.7) * cols)
    image = image * shading[..., None] + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_domains(root: str | Path, train: int = 200, test: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Write ``trainA/ trainB/`` (different layouts: unpaired), ``testA/`` and ``testB/`` (the
    ground-truth renderings of the test layouts, same file names) and ``testL/`` (label maps)."""
    root = Path(root)
    for name in ("trainA", "trainB", "testA", "testB", "testL"):
        (root / name).mkdir(parents=True, exist_ok=True)
    base = seed * 1_000_000
    for i in range(train):
        Image.fromarray(render_flat(render_layout(base + i, size))).save(root / "trainA" / f"{i:04d}.png")
        layout_b = render_layout(base + 500_000 + i, size)
        Image.fromarray(render_textured(layout_b, base + 500_000 + i)).save(root / "trainB" / f"{i:04d}.png")
    for i in range(test):
        layout = render_layout(base + 900_000 + i, size)
        Image.fromarray(render_flat(layout)).save(root / "testA" / f"{i:04d}.png")
        Image.fromarray(render_textured(layout, base + 900_000 + i)).save(root / "testB" / f"{i:04d}.png")
        Image.fromarray(layout.astype(np.uint8)).save(root / "testL" / f"{i:04d}.png")
    return root


CLASS_NAMES = ("sand", "roofs", "grass", "water")
