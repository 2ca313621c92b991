"""A picture for the README: held-out aerial photos | translations of one or more maps runs | true maps.

python benchmarks/maps_pictures.py RUN_DIR [RUN_DIR ...] [--labels A B ...] --out docs/x.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from sesim.data.images import load_rgb, to_image, to_tensor
from sesim.inference import load_generator
from sesim.inference.translate import translate_tensor

HEADER = 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--labels", nargs="+", help="column titles, one per run (default: no titles)")
    parser.add_argument("--data", default="../shared/data/maps")
    parser.add_argument("--ids", type=int, nargs="+", default=[1001, 1030, 1077])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--out", default="docs/maps_samples.jpg")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.run_dirs):
        parser.error(f"--labels: give one per run ({len(args.run_dirs)}), got {len(args.labels)}")
    generators = [load_generator(Path(run) / "checkpoints" / "latest.pt")[0] for run in args.run_dirs]
    size, top = args.size, HEADER if args.labels else 0
    columns = len(generators) + 2
    sheet = Image.new("RGB", (size * columns, top + size * len(args.ids)), "white")
    if args.labels:
        draw = ImageDraw.Draw(sheet)
        for col, title in enumerate(["aerial photo", *args.labels, "true map"]):
            draw.text((col * size + 6, 5), title, fill="black")
    for row, i in enumerate(args.ids):
        aerial = load_rgb(Path(args.data) / "trainA" / f"{i}.jpg").resize((256, 256), Image.BICUBIC)
        with torch.no_grad():
            fakes = [to_image(translate_tensor(g, to_tensor(aerial)[None])[0]) for g in generators]
        truth = load_rgb(Path(args.data) / "trainB" / f"{i}.jpg")
        for col, image in enumerate((aerial, *fakes, truth)):
            sheet.paste(image.resize((size, size), Image.BICUBIC), (col * size, top + row * size))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(args.out)


if __name__ == "__main__":
    main()
