"""Copy a subset of the maps set into an ignored folder of the checkout, for the GPU call's maps
stage (the shared data does not travel with a device call, and what travels is at most 64 MiB).

    python benchmarks/gpu_data.py --maps ../shared/data/maps --to .gpu-data/maps --train 500

Writes ``trainA/ trainB/`` (files 1..TRAIN, unpaired in training) and ``testA/ testB/`` (the
held-out files 1001-1096, scored with the GcGAN protocol), and prints their size.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from maps_split import HELD_OUT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", default="../shared/data/maps")
    parser.add_argument("--to", default=".gpu-data/maps")
    parser.add_argument("--train", type=int, default=500, help="training pairs (files 1..N)")
    args = parser.parse_args()
    source, target = Path(args.maps), Path(args.to)
    if not (source / "trainA").is_dir():
        parser.error(f"--maps {source}: no trainA/ inside (the shared maps set)")
    for split, numbers in (("train", range(1, args.train + 1)), ("test", HELD_OUT)):
        for domain in "AB":
            folder = target / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            for number in numbers:
                shutil.copyfile(source / f"train{domain}" / f"{number}.jpg", folder / f"{number}.jpg")
    size = sum(p.stat().st_size for p in target.rglob("*.jpg"))
    print(f"wrote {target}: {args.train} training and {len(HELD_OUT)} held-out pairs, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
