"""Speed of one training step (heads, D and G updates) at 256x256: FSeSim and LSeSim.

Prints one JSON object: per setting the median step time, images/s, peak memory and the
switches used, plus torch version and device name. Every variant builds and places the method
and picks its step exactly as ``sesim train`` does (``build_method``, ``place``,
``step_function``); ``baseline`` is the plain eager step (fp32, contiguous layout, unfused Adam,
no NaN guard) measured in the same run, and ``defaults`` is what ``sesim train`` runs on this
device with nothing set.

    python benchmarks/train_step.py --device cuda --batch 1 8
    python benchmarks/train_step.py --device cpu --batch 1 --repeats 5 --variants baseline defaults
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
from sesim.methods import Optimization
from sesim.training.graphs import WARMUP_STEPS, CapturedStep, prepare_step
from sesim.training.loop import build_method

# name -> config overrides (every variant also runs the loop's own construction)
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=off", "train.nan_guard=false"),
    "defaults": (),
    "fp32": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=off"),
    "fp32+nhwc": ("train.precision=fp32", "train.channels_last=true", "train.cuda_graphs=off"),
    "fp32+graph": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=on"),
    "fp32+nhwc+graph": ("train.precision=fp32", "train.channels_last=true", "train.cuda_graphs=on"),
    "bf16": ("train.precision=bf16", "train.channels_last=false", "train.cuda_graphs=off"),
    "bf16+graph": ("train.precision=bf16", "train.channels_last=false", "train.cuda_graphs=on"),
    "bf16+nhwc+graph": ("train.precision=bf16", "train.channels_last=true", "train.cuda_graphs=on"),
    "bf16+compile+graph": ("train.precision=bf16", "train.channels_last=false", "train.cuda_graphs=on",
                           "train.compile=default"),
    "fp32+compile": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=off",
                     "train.compile=default"),
    "fp32+compile+graph": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=on",
                           "train.compile=default"),
}  # fmt: skip


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def build_step(preset: str, overrides: tuple[str, ...], batch: int, device: torch.device, size: int):
    """The method and the step function ``sesim train`` would run for these settings."""
    config = load_config(
        preset,
        ["loss.backbone_weights=random", f"train.batch_size={batch}", f"data.crop_size={size}",
         f"data.load_size={size}", f"train.device={device}", *overrides],
    )  # fmt: skip
    t = config.train
    method = build_method(config, device)
    if "train.nan_guard=false" in overrides:  # the plain baseline: unfused Adam as well
        method = type(method)(
            config.model.generator, config.model.discriminator, config.loss, config.weights,
            Optimization(fused=False), check_finite=False, autocast=method.autocast,
        )  # fmt: skip
    nhwc = t.channels_last is True  # the loop's rule: auto is contiguous
    layout = torch.channels_last if nhwc else torch.contiguous_format
    method.place(device, torch.float32, layout)
    query_rng = torch.Generator(device=device).manual_seed(0)
    step = prepare_step(method, query_rng, t.cuda_graphs, t.compile, device, 1, strict=True)
    captured = isinstance(step, CapturedStep)
    switches = {"precision": t.precision, "channels_last": str(nhwc), "cuda_graphs": captured, "compile": t.compile}
    return method, step, layout, switches


def measure(preset: str, name: str, batch: int, device: torch.device, repeats: int, warmup: int, size: int) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _, step, layout, switches = build_step(preset, VARIANTS[name], batch, device, size)
    real_a = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    real_b = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    start = time.perf_counter()
    for _ in range(max(warmup, WARMUP_STEPS + 1 if switches["cuda_graphs"] else warmup)):  # the capture too
        step(real_a, real_b)
    sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(real_a, real_b)
        sync(device)
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    return {
        "method": preset, "variant": name, "batch": batch, "median_ms": round(median * 1e3, 2),
        "images_per_s": round(batch / median, 2), "peak_memory_mb": round(peak_memory_mb(device), 1),
        "warmup_s": round(warmup_s, 1), "repeats": repeats, "switches": switches, "overrides": list(VARIANTS[name]),
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
    parser.add_argument("--out", help="also write the JSON here, rewritten after every row (partial results survive)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    result = {"benchmark": "train_step", "size": args.size, **machine(device), "results": rows}
    for preset in args.methods:
        for batch in args.batch:
            for name in args.variants:
                try:
                    row = measure(preset, name, batch, device, args.repeats, args.warmup, args.size)
                except Exception as error:  # a variant that fails is recorded, the others still run
                    row = {"method": preset, "variant": name, "batch": batch, "error": f"{type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}"[:300]}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
