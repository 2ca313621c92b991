"""``sesim train ... --probe``: a few real steps of exactly the configured run on synthetic
batches of its shape, measured before anyone waits days for it: peak memory, step time, the whole
schedule's duration and finish, and the largest batch (and, at batch 1, the largest crop) that
fits the device, each one proposed from measured memory and then run, backing off until it
fits. It writes no run folder."""

from __future__ import annotations

import datetime
import statistics
import time
from collections.abc import Callable

import torch

from sesim.config import RunConfig
from sesim.errors import OutOfMemory, one_line
from sesim.runtime import (
    HeapPeak,
    available_memory,
    is_out_of_memory,
    memory_cap,
    peak_memory,
    pick_device,
    resident_bytes,
)
from sesim.training.distributed import Processes
from sesim.training.graphs import step_function
from sesim.training.loop import memory_fixes, preflight, set_up, speed_up

WARMUP = 3  # untimed steps: lazy initialisation, allocator growth, a CUDA graph's capture
MEASURED = 5  # timed steps; the median is reported
HEADROOM = 0.9  # a proposal may take this share of the free memory
MULTIPLE = 16  # crops are proposed in multiples of this
TRIAL_SECONDS = 60  # a proposal whose one step would take longer is reported, not run


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(size: tuple[int, int], batch: int, device: torch.device, dtype: torch.dtype) -> tuple:
    """``(real_a, real_b)`` of ``batch`` images of ``size`` (width, height) in ``[-1, 1]``."""
    images = torch.rand(2, batch, 3, size[1], size[0], generator=torch.Generator().manual_seed(batch)) * 2 - 1
    return images[0].to(device, dtype), images[1].to(device, dtype)


def time_steps(step: Callable, batch: tuple, device: torch.device, warmup: int, measured: int) -> list[float]:
    """Seconds of each measured step after ``warmup`` untimed ones (the device drained each time)."""
    for _ in range(warmup):
        step(*batch)
    _synchronize(device)
    times = []
    for _ in range(measured):
        started = time.perf_counter()
        step(*batch)
        _synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def probe(
    config: RunConfig,
    warmup: int = WARMUP,
    measured: int = MEASURED,
    search: bool = True,
    step: int = 0,
    decode: bool = False,
) -> dict:
    """Set the configured run up as ``sesim train`` would (no run folder), make the dry run's
    checks on it (``checks``: their lines; ``decode`` as ``--dry-run=full``), run ``warmup`` +
    ``measured`` steps on synthetic batches of its shape, and measure them; with ``search``, also
    the largest batch and crop that fit. ``step``: where a resumed run stands (the schedule's
    time is that of the steps left)."""
    device = pick_device(config.train.device, "train.device")
    d, t = config.data, config.train
    with memory_cap(device):
        run = set_up(config, Processes(), device)
        checks = preflight(config, decode, run)
        size = next(iter(run.dataset.sizes.values())) if d.preprocess == "none" else (d.crop_size, d.crop_size)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            times = time_steps(speed_up(run), synthetic_batch(size, t.batch_size, device, run.dtype), device, warmup,
                               measured)  # fmt: skip
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            raise OutOfMemory(
                f"probe: a step of batch {t.batch_size} of {size[0]}x{size[1]} runs out of memory on {device} "
                f"({one_line(error)}); {memory_fixes(t)}"
            ) from None
        median, total = statistics.median(times), run.plan.total_steps
        left = max(0, total - step)
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        )
        result = {
            "checks": checks, "device": name,
            "method": config.method, "preset": config.name, "batch_size": t.batch_size, "image_size": list(size),
            "precision": t.precision, "compile": t.compile, "activation_checkpointing": t.activation_checkpointing,
            "step_s_median": median, "step_s": times, "images_per_s": t.batch_size / median,
            "peak_memory": peak_memory(device), "free_memory": available_memory(device),
            "total_steps": total, "steps_left": left, "schedule_hours": left * median / 3600,
            "finish": (datetime.datetime.now() + datetime.timedelta(seconds=left * median)).isoformat(
                timespec="minutes"),
        }  # fmt: skip
        if search:
            result.update(search_limits(run, size, device, median / t.batch_size))
    return result


def search_limits(run, size: tuple[int, int], device: torch.device, image_seconds: float) -> dict:
    """The largest batch at the run's image size, and the largest square crop at batch 1, that
    fit: proposed from the memory one step takes at batch 1 and 2 (the slope per image; the
    activations per pixel), then run, a quarter less each time one does not fit. A proposal whose
    step would take more than :data:`TRIAL_SECONDS` (``image_seconds`` per image, as measured; a
    CPU at large sizes) is reported as proposed, not run (``*_run: false``)."""
    step = step_function(run.method, run.query_rng, False, False, False)  # eager: any shape
    free = available_memory(device)
    if free is None:
        return {}
    held = torch.cuda.memory_allocated(device) if device.type == "cuda" else resident_bytes()
    budget = held + HEADROOM * free  # what this process may hold at its peak
    base, one = _step_peak(step, size, 1, device, run.dtype)
    _, two = _step_peak(step, size, 2, device, run.dtype)
    per_image = max(1, two - one)
    proposal = max(1, 1 + int((budget - one) / per_image))

    def runs(batch: int, side: tuple[int, int] = size) -> bool:
        return fits(step, synthetic_batch(side, batch, device, run.dtype), device)

    def quick(batch: int, side: tuple[int, int] = size) -> bool:
        return batch * side[0] * side[1] / (size[0] * size[1]) * image_seconds <= TRIAL_SECONDS

    batch_run = quick(proposal)
    found = {
        "largest_batch": largest(1, proposal, runs) if batch_run else proposal,
        "largest_batch_proposal": proposal, "largest_batch_run": batch_run,
    }  # fmt: skip
    if run.config.data.preprocess != "none":
        per_pixel = max(1e-9, (one - base) / (size[0] * size[1]))
        crop_proposal = max(size[0], int(((budget - base) / per_pixel) ** 0.5) // MULTIPLE * MULTIPLE)
        crop_run = quick(1, (crop_proposal, crop_proposal))
        crop = (
            largest(size[0], crop_proposal, lambda side: runs(1, (side, side)), MULTIPLE) if crop_run else crop_proposal
        )
        found.update(
            {"largest_crop_at_batch_1": crop, "largest_crop_proposal": crop_proposal, "largest_crop_run": crop_run}
        )
    return found


def _step_peak(step: Callable, size: tuple[int, int], batch: int, device: torch.device, dtype) -> tuple[int, int]:
    """Memory held before one step at ``batch``, and at its peak (CUDA: allocated bytes; CPU: what
    the allocator handed out, sampled)."""
    data = synthetic_batch(size, batch, device, dtype)
    if device.type == "cuda":
        _synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(*data)
        _synchronize(device)
        return before, torch.cuda.max_memory_allocated(device)
    with HeapPeak() as peak:
        step(*data)
    return peak.before, peak.bytes


def fits(step: Callable, batch: tuple, device: torch.device) -> bool:
    """Whether a step at this shape runs without running out of memory (on the CPU the process's
    cap makes an allocation past the memory there is fail instead of waking the OOM killer)."""
    try:
        step(*batch)
        _synchronize(device)
        return True
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        return False
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest(known: int, proposal: int, works: Callable[[int], bool], multiple: int = 1) -> int:
    """The proposal if it ``works``, else a quarter less each time down to ``known`` (which did)."""
    value = proposal
    while value > known:
        if works(value):
            return value
        value = max(known, (value * 3 // 4) // multiple * multiple)
    return known


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.2f} GiB"


def _duration(hours: float) -> str:
    """``2.5 h``, ``3 days 4.0 h`` or ``12 min``: a schedule's length as a reader wants it."""
    if hours < 1:
        return f"{hours * 60:.0f} min" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"
    if hours >= 48:
        return f"{hours // 24:.0f} days {hours % 24:.1f} h"
    return f"{hours:.1f} h"


def report(result: dict) -> str:
    """The probe as a few lines for the terminal."""
    width, height = result["image_size"]
    peak = ", ".join(f"{_gib(value)} {kind}" for kind, value in result["peak_memory"].items())
    lines = [
        f"probe: {result['preset']} ({result['method']}) on {result['device']}, batch {result['batch_size']} of "
        f"{width}x{height}, precision {result['precision']}, compile {result['compile']}, activation checkpointing "
        f"{'on' if result['activation_checkpointing'] else 'off'}",
        f"  step: {result['step_s_median']:.3f} s (median of {len(result['step_s'])}, after warm-up), "
        f"{result['images_per_s']:.2f} images/s",
        f"  peak memory: {peak} ({_gib(result['free_memory'])} free besides)",
        f"  schedule: {result['steps_left']} steps"
        + (f" of {result['total_steps']}" if result["steps_left"] < result["total_steps"] else "")
        + f" take ~{_duration(result['schedule_hours'])} at that rate: finished about "
        f"{result['finish'].replace('T', ' ')}",
    ]
    not_run = f"proposed from the measured memory, not run: its step would take over {TRIAL_SECONDS} s here"
    if "largest_batch" in result:
        how = f"run; proposed {result['largest_batch_proposal']}" if result["largest_batch_run"] else not_run
        lines.append(f"  largest batch that fits at {width}x{height}: {result['largest_batch']} ({how})")
    if "largest_crop_at_batch_1" in result:
        how = f"run; proposed {result['largest_crop_proposal']}" if result["largest_crop_run"] else not_run
        lines.append(f"  largest crop that fits at batch 1: {result['largest_crop_at_batch_1']} ({how})")
    return "\n".join(lines)
