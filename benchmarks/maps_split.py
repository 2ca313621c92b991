"""The maps set as every benchmark splits it: files 1-1000 train (unpaired), files 1001-1096 are
held out and scored as the GcGAN protocol does (RGB, resized to 256x256 bicubic)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

TRAINING = range(1, 1001)
HELD_OUT = range(1001, 1097)
SCORED_SIZE = 256


def held_out_image(maps: Path, domain: str, number: int) -> Image.Image:
    """Held-out file ``number`` of ``trainA`` (aerial) or ``trainB`` (map), as it is scored."""
    with Image.open(Path(maps) / domain / f"{number}.jpg") as image:
        return image.convert("RGB").resize((SCORED_SIZE, SCORED_SIZE), Image.BICUBIC)
