"""Speed of one training step (heads, D and G updates) at 256x256: FSeSim and LSeSim.

Prints one JSON object: per setting the median step time, images/s, peak memory, and the
switches used, plus torch version and device name. The baseline row of each method is the plain
eager step (fp32, contiguous layout, unfused Adam) measured in the same run; the other rows use
the training loop's defaults for the device plus the named switches.

    python benchmarks/train_step.py --device cuda --batch 1 8
    python benchmarks/train_step.py --device cpu --batch 1 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, sync
from sesim.config import load_config
from sesim.methods import OneSidedTranslation, Optimization

VARIANTS = {
    "baseline": {"precision": None, "channels_last": False, "fused": False, "compile": None},
    "fp32": {"precision": None, "channels_last": "auto", "fused": True, "compile": None},
    "fp32+compile": {"precision": None, "channels_last": "auto", "fused": True, "compile": "default"},
    "bf16": {"precision": torch.bfloat16, "channels_last": "auto", "fused": True, "compile": None},
    "bf16+compile": {"precision": torch.bfloat16, "channels_last": "auto", "fused": True, "compile": "max-autotune"},
}


def _nhwc(variant: dict, device: torch.device) -> bool:
    """The training loop's rule: ``auto`` is channels-last on CUDA only."""
    return device.type == "cuda" if variant["channels_last"] == "auto" else variant["channels_last"]


def build(preset: str, variant: dict, device: torch.device) -> OneSidedTranslation:
    config = load_config(preset, ["loss.backbone_weights=random"])  # weights do not change the speed
    method = OneSidedTranslation(
        config.model.generator, config.model.discriminator, config.loss, config.weights,
        Optimization(fused=variant["fused"]), check_finite=False, autocast=variant["precision"],
    ).to(device)  # fmt: skip
    if _nhwc(variant, device):
        method.to(memory_format=torch.channels_last)
    if variant["compile"]:
        for module in method.compile_targets():
            module.compile(mode=variant["compile"])
    return method


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def measure(
    preset: str, name: str, batch: int, device: torch.device, repeats: int, warmup: int, size: int = 256
) -> dict:
    variant = VARIANTS[name]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    method = build(preset, variant, device)
    layout = torch.channels_last if _nhwc(variant, device) else torch.contiguous_format
    real_a = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    real_b = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    query_rng = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    for _ in range(warmup):
        method.training_step(real_a, real_b, query_rng)
    sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method.training_step(real_a, real_b, query_rng)
        sync(device)
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    return {
        "method": preset, "variant": name, "batch": batch, "median_ms": round(median * 1e3, 2),
        "images_per_s": round(batch / median, 2), "peak_memory_mb": round(peak_memory_mb(device), 1),
        "warmup_s": round(warmup_s, 1), "repeats": repeats,
        "switches": {k: str(v) for k, v in variant.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=["fsesim", "lsesim"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="image side (smaller only for smoke runs)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for preset in args.methods:
        for batch in args.batch:
            for name in args.variants:
                row = measure(preset, name, batch, device, args.repeats, args.warmup, args.size)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "train_step", "size": args.size, **machine(device), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
