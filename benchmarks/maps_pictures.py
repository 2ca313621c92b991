"""A picture for the README: held-out aerial photos | translations | true maps (from a maps run)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from sesim.data.images import load_rgb, to_image, to_tensor
from sesim.training.loop import load_generator
from sesim.translate import translate_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--data", default="../shared/data/maps")
    parser.add_argument("--ids", type=int, nargs="+", default=[1001, 1030, 1077])
    parser.add_argument("--out", default="docs/maps_samples.jpg")
    args = parser.parse_args()
    generator, _ = load_generator(Path(args.run_dir) / "checkpoints" / "latest.pt")
    size = 192
    sheet = Image.new("RGB", (size * 3, size * len(args.ids)), "white")
    for row, i in enumerate(args.ids):
        aerial = load_rgb(Path(args.data) / "trainA" / f"{i}.jpg").resize((256, 256), Image.BICUBIC)
        with torch.no_grad():
            fake = to_image(translate_tensor(generator, to_tensor(aerial)[None])[0])
        truth = load_rgb(Path(args.data) / "trainB" / f"{i}.jpg")
        for col, image in enumerate((aerial, fake, truth)):
            sheet.paste(image.resize((size, size), Image.BICUBIC), (col * size, row * size))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(args.out)


if __name__ == "__main__":
    main()
