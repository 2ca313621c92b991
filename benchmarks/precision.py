"""Do bf16 autocast and full precision train the same model? The demo (synthetic domains,
EfficientNet-Lite0, 400 steps) three times: fp32 seed 0, bf16 seed 0, and fp32 seed 1 for the
run-to-run noise. Prints JSON: loss trajectories (means over windows of 50 steps), the gaps
bf16-vs-fp32 and seed-vs-seed, and the demo's layout mIoU of each run.

    python benchmarks/precision.py [--device cuda] [--steps 400] [--out runs/precision]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine
from sesim.demo import run_demo

KEYS = ("loss/d", "loss/g_gan", "loss/structure")


def trajectory(run_dir: Path, window: int) -> dict[str, list[float]]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss/g" in r]
    curves = {}
    for key in KEYS:
        values = [r[key] for r in records]
        curves[key] = [round(sum(chunk) / len(chunk), 5) for chunk in _chunks(values, window)]
    return curves


def _chunks(values: list[float], size: int):
    return [values[i : i + size] for i in range(0, len(values), size)]


def gap(a: dict, b: dict) -> dict[str, float]:
    """Mean absolute difference of two windowed trajectories, per loss."""
    return {key: round(sum(abs(x - y) for x, y in zip(a[key], b[key], strict=True)) / len(a[key]), 5) for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--window", type=int, default=50, help="steps per averaged point")
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="sesim-precision-"))
    runs = {"fp32": ("fp32", 0), "bf16": ("bf16", 0), "fp32_seed1": ("fp32", 1)}
    results = {}
    for name, (precision, seed) in runs.items():
        sets = (f"train.precision={precision}", f"train.seed={seed}", f"train.device={args.device}",
                "log.every=1", "log.progress=false", "log.tensorboard=false")  # fmt: skip
        run_dir = run_demo(str(out / name), args.steps, sets)
        report = json.loads((run_dir / "report.json").read_text())
        results[name] = {"curves": trajectory(run_dir, args.window), "layout_miou": round(report["trained"], 4),
                         "seconds": report["seconds"]}  # fmt: skip
        print(name, results[name]["layout_miou"], report["seconds"], file=sys.stderr, flush=True)
    summary = {
        "benchmark": "precision",
        **machine(torch.device(args.device)),
        "steps": args.steps,
        "window": args.window,
        "gap_bf16_vs_fp32": gap(results["fp32"]["curves"], results["bf16"]["curves"]),
        "gap_seed_vs_seed_fp32": gap(results["fp32"]["curves"], results["fp32_seed1"]["curves"]),
        "runs": results,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
