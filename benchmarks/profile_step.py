"""Where a training step's device time goes: the ATen ops of a few eager steps, by device time.

Prints one JSON object: per op, its count per step and device milliseconds per step, largest
first, and their total; with ``--kernels`` the CUDA kernels too. The step is built as
``sesim train`` builds it (``train_step.build_step``), eager (no CUDA graph: the profiler sees
each op), so the device time is what a replayed graph also spends, without the launches.

    python benchmarks/profile_step.py --method fsesim --batch 8 --set train.precision=bf16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, sync
from train_step import build_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--method", default="fsesim")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--kernels", action="store_true", help="also list the CUDA kernels")
    args = parser.parse_args()
    device = torch.device(args.device)
    overrides = ("train.cuda_graphs=off", *args.overrides)
    _, step, layout, switches = build_step(args.method, overrides, args.batch, device, args.size)
    real_a = (torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1).contiguous(memory_format=layout)
    real_b = (torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1).contiguous(memory_format=layout)
    for _ in range(3):
        step(real_a, real_b)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            step(real_a, real_b)
        sync(device)
    on_device = device.type == "cuda"

    def device_ms(event) -> float:
        total = getattr(event, "device_time_total", None)
        if total is None:
            total = getattr(event, "cuda_time_total", 0)
        return (total if on_device else event.cpu_time_total) / 1e3 / args.steps

    events = [e for e in profiler.key_averages() if e.key.startswith("aten::")]
    ops = sorted(
        ({"op": e.key, "calls_per_step": e.count / args.steps, "ms_per_step": round(device_ms(e), 3)} for e in events),
        key=lambda row: -row["ms_per_step"],
    )
    result = {
        "benchmark": "profile_step", "method": args.method, "batch": args.batch, "size": args.size,
        "switches": switches, **machine(device), "ops": ops[: args.top],
    }  # fmt: skip
    if args.kernels and on_device:
        kernels = [e for e in profiler.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        result["kernels"] = sorted(
            ({"kernel": e.key[:120], "calls_per_step": e.count / args.steps, "ms_per_step": round(device_ms(e), 3)}
             for e in kernels),
            key=lambda row: -row["ms_per_step"],
        )[: args.top]  # fmt: skip
        result["kernel_ms_per_step"] = round(sum(device_ms(e) for e in kernels), 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
