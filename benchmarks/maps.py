"""Train on the maps set (aerial -> map, files 1-1000) and score files 1001-1096 (GcGAN protocol).

Usage: ``python benchmarks/maps.py --data ../shared/data/maps --steps 1500 [--set KEY=VALUE ...]``
Prints one JSON object; also evaluates an existing run with ``--evaluate RUN_DIR``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from maps_split import HELD_OUT, TRAINING, held_out_image
from sesim.config import load_config
from sesim.data.images import to_image, to_tensor
from sesim.evaluation.paired import maps_protocol
from sesim.inference import load_generator, pick_device
from sesim.inference.translate import translate_tensor
from sesim.training.loop import train

CPU_RECIPE = [
    "loss.backbone=efficientnet_lite0", "loss.taps=[stage2,stage3,stage5]", "loss.window=null",
    "data.load_size=143", "data.crop_size=128", "data.workers=2",
    "model.generator.ngf=32", "model.generator.blocks=6", "model.discriminator.ndf=32",
    "train.batch_size=2", "train.lr=0.0002", "log.every=50", "log.sample_every=250", "log.checkpoint_every=500",
]  # fmt: skip


def training_split(maps: Path, scratch: Path) -> Path:
    """``scratch/trainA|trainB`` with links to files 1-1000 only (1001-1096 stay held out)."""
    for domain in ("trainA", "trainB"):
        (scratch / domain).mkdir(parents=True, exist_ok=True)
        for i in TRAINING:
            link = scratch / domain / f"{i}.jpg"
            if not link.exists():
                link.symlink_to((maps / domain / f"{i}.jpg").resolve())
    return scratch


def evaluate(run_dir: Path, maps: Path, device: torch.device) -> dict:
    generator, _ = load_generator(run_dir / "checkpoints" / "latest.pt", device)
    predictions, targets = [], []
    for i in HELD_OUT:
        aerial = to_tensor(held_out_image(maps, "trainA", i))
        output = translate_tensor(generator, aerial[None].to(device))[0]
        predictions.append(np.asarray(to_image(output)))
        targets.append(np.asarray(held_out_image(maps, "trainB", i)))
    scores = maps_protocol(predictions, targets)
    return {"rmse": scores.rmse, "accuracy_below_5": scores.accuracy_5, "accuracy_below_10": scores.accuracy_10,
            "images": scores.images}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/maps")
    parser.add_argument("--preset", default="fsesim")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="runs/maps")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--evaluate", help="score an existing run directory instead of training")
    args = parser.parse_args()
    maps = Path(args.data)
    device = pick_device("auto")
    started = time.time()
    if args.evaluate:
        run_dir = Path(args.evaluate)
    else:
        split = training_split(maps, Path(args.out) / "split")
        overrides = [*CPU_RECIPE, f"data.root={split}", f"train.max_steps={args.steps}", f"log.out_dir={args.out}"]
        run_dir = train(load_config(args.preset, [*overrides, *args.set]))
    result = {"run": str(run_dir), "preset": args.preset, "steps": args.steps, "overrides": args.set}
    result |= {"device": str(device), "seconds": round(time.time() - started, 1)}
    result |= evaluate(run_dir, maps, device)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
