"""Timing helpers shared by the benchmarks: medians over repeats, device facts."""

from __future__ import annotations

import datetime
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds, synchronising the device around each call."""
    return interleaved_medians({"fn": fn}, device, repeats, warmup)["fn"]


def cpu_model() -> str | None:
    """The CPU's marketing name from ``/proc/cpuinfo`` (Linux), else ``None``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def cpu_name() -> str:
    """The CPU's marketing name where the system gives one, else its architecture (``x86_64``),
    with the vector kernels PyTorch runs on it (``AMD EPYC (AVX2)``): one model name covers
    machines with and without AVX-512, whose step times differ twofold."""
    name = cpu_model() or platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    kernels = {"AVX512": "AVX-512", "DEFAULT": None}.get(capability, capability)
    return f"{name} ({kernels})" if kernels else name


def interleaved_medians(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall time in ms of each function, timed in rounds that call every function once.

    On a shared machine whose speed drifts within minutes, timing one function after the other
    compares different machines; interleaving spreads the drift over all of them alike. The order
    is shuffled every round (fixed seed): what ran just before a function (a large free, a cold
    cache) changes its time by several percent, so a fixed order would favour some of them.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order, shuffle = list(fns), random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def machine(device: torch.device) -> dict:
    facts = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "date": datetime.date.today().isoformat(),
    }
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
    return facts


def emit(result: dict, out: str | None) -> None:
    """Print a benchmark's JSON, and write it to ``out`` too when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
