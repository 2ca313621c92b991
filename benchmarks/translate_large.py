"""A very large photo through `sesim translate`'s path (automatic tiling from the memory estimate):
wall time, tiles and the process's peak memory, against the memory a whole-image pass would need.

The paper's generator (ngf 64, 9 blocks; speed and memory do not depend on the weights), one
SIZE x SIZE image (default 6000, the size that failed with an allocation error before tiling).

    python benchmarks/translate_large.py --size 6000 --out benchmarks/results/translate_large_cpu.json
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, machine
from sesim.inference.tiling import auto_tile, available_memory, bytes_per_pixel, count_tiles, fit_tile
from sesim.inference.translate import translate_paths
from sesim.networks import ResnetGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = ResnetGenerator().to(device).eval()
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    # A smooth random field (not noise): what a photo's statistics look like to the generator.
    coarse = rng.integers(0, 255, (args.size // 64 + 1, args.size // 64 + 1, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((args.size, args.size), Image.BICUBIC).save(folder / "large.png")
    per_pixel = bytes_per_pixel(generator, device)
    free = available_memory(device)
    fitting = auto_tile(args.size**2, free, per_pixel)
    tile = fit_tile(args.size, args.size, fitting) if fitting else None  # what translate_paths uses
    start = time.perf_counter()
    written = translate_paths(generator, folder / "large.png", folder / "out.png", device, progress=False)
    seconds = time.perf_counter() - start
    result = {
        "benchmark": "translate_large",
        "machine": machine(device),
        "size": args.size,
        "whole_image_estimate_gib": round(args.size**2 * per_pixel / 2**30, 2),
        "free_gib": round(free / 2**30, 2) if free else None,
        "tile": tile,
        "tiles": count_tiles(args.size, args.size, tile) if tile else 1,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "output_size": list(Image.open(written[0]).size),
        "notes": written.notes,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
