"""The training loop's chores, each a small piece with its own test: the step plan and learning-rate
schedule, stop requests and the time budget, skipped files, the non-finite policy, the best score."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sesim.config import TrainConfig
from sesim.errors import ConfigError, one_line

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None
from sesim.methods import NonFiniteLoss
from sesim.training.distributed import Processes


class TrainingStopped(RuntimeError):
    """Training could not go on (too many non-finite losses); the last good checkpoint is intact."""


class OtherProcessFailed(TrainingStopped):
    """Another training process met an error; this one stopped with it at the same step."""


class Batches:
    """A data loader's batches, fetched one at a time, with a failure to fetch one (an unreadable
    file, a worker that died) kept instead of raised: under several processes every one learns
    that one of them cannot go on before any enters the next step (whose collectives would wait
    for it forever)."""

    def __init__(self, loader: Iterable[dict]) -> None:
        self.iterator = iter(loader)
        self.next: dict | None = None
        self.error: Exception | None = None

    def fetch(self) -> bool:
        """Fetch the next batch; ``False`` when that failed (the error is kept)."""
        try:
            self.next, self.error = next(self.iterator), None
        except Exception as error:  # StopIteration too: the step sampler never ends
            self.next, self.error = None, error
        return self.error is None

    def failure(self, processes: Processes) -> Exception:
        """The error to end this process with, once the processes agreed that one failed: its own,
        or the failing process's line (a collective: every process calls it)."""
        lines = processes.gather(None if self.error is None else one_line(self.error))
        if self.error is not None:
            return self.error
        rank, line = next((rank, line) for rank, line in enumerate(lines) if line)
        return OtherProcessFailed(f"process {rank} of {processes.world_size} failed: {line}")


def linear_schedule(constant_steps: int, total_steps: int) -> Callable[[int], float]:
    """Per-step learning-rate factor: 1 for ``constant_steps``, then linear to 0 at ``total_steps``."""
    decay = max(1, total_steps - constant_steps)
    return lambda step: 1.0 - max(0, step - constant_steps) / decay


def epoch_schedule(epochs: int, decay_epochs: int, total_steps: int) -> Callable[[int], float]:
    """The CycleGAN / CUT / F-LSeSim rule, once per epoch: ``1 - max(0, e + 1 - epochs) /
    (decay_epochs + 1)`` for the 0-based epoch ``e`` (it never reaches 0). An epoch is
    ``total_steps / (epochs + decay_epochs)`` steps, so a compressed run keeps the rule's shape.

    >>> factor = epoch_schedule(2, 2, 40)  # 10 steps an epoch
    >>> [round(factor(step), 3) for step in (0, 9, 10, 19, 20, 29, 30, 39)]
    [1.0, 1.0, 1.0, 1.0, 0.667, 0.667, 0.333, 0.333]
    """
    length = total_steps / max(1, epochs + decay_epochs)
    return lambda step: 1.0 - max(0, int(step // length) + 1 - epochs) / (decay_epochs + 1)


@dataclass(frozen=True)
class StepPlan:
    """How long a run is and how its learning rate moves."""

    steps_per_epoch: int
    scheduled_steps: int  # what the preset's epochs come to
    total_steps: int  # train.max_steps, or the scheduled steps
    constant_steps: int  # the constant part, in proportion when max_steps compresses or stretches
    factor: Callable[[int], float]  # step -> learning-rate factor


def plan_steps(train: TrainConfig, images: int) -> StepPlan:
    """The step plan of ``train`` for a dataset of ``images`` (one epoch: every image once).

    >>> from sesim.config import TrainConfig
    >>> plan = plan_steps(TrainConfig(epochs=3, decay_epochs=1, max_steps=8, schedule="step"), images=10)
    >>> plan.steps_per_epoch, plan.scheduled_steps, plan.total_steps, plan.constant_steps
    (10, 40, 8, 6)
    """
    steps_per_epoch = math.ceil(images / train.batch_size)
    scheduled = (train.epochs + train.decay_epochs) * steps_per_epoch
    total = train.max_steps or scheduled
    constant = round(total * train.epochs / max(1, train.epochs + train.decay_epochs))
    if train.schedule == "epoch":
        factor = epoch_schedule(train.epochs, train.decay_epochs, total)
    else:
        factor = linear_schedule(constant, total)
    return StepPlan(steps_per_epoch, scheduled, total, constant, factor)


class StopRequests:
    """Turns SIGINT/SIGTERM into a flag the loop reads between steps (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, number: int, frame) -> None:
        self.signal = number

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class TimeBudget:
    """``train.max_minutes``: whether the wall-clock budget is spent (``None``: never)."""

    def __init__(self, max_minutes: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.started = clock, clock()
        self.seconds = None if max_minutes is None else 60 * max_minutes

    def minutes(self) -> float:
        return (self.clock() - self.started) / 60

    def spent(self) -> bool:
        return self.seconds is not None and self.clock() - self.started >= self.seconds


def own_process_group(worker_id: int) -> None:
    """Loader workers leave the main process's process group, so a signal sent to the whole group
    (Ctrl-C in a terminal, ``timeout``, ``kill -- -PID``, schedulers) reaches only the main process:
    it finishes the step, saves and shuts the workers down itself. A worker killed by such a signal
    would otherwise raise in the main process in the middle of a step, before anything is saved.
    Workers still exit when the main process dies (PyTorch's parent watchdog)."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:  # already a group or session leader: nothing to leave
            pass


@dataclass
class SkippedFiles:
    """Unreadable images the data set skipped (``data.on_bad_image: skip``), each reported once."""

    seen: set[str] = field(default_factory=set)

    def new(self, batch: dict) -> list[str]:
        """The files of this batch's ``skipped`` field not reported before (and now remembered)."""
        fresh = []
        for path in (p for joined in batch["skipped"] for p in joined.split("\n") if p):
            if path not in self.seen:
                self.seen.add(path)
                fresh.append(path)
        return fresh


@dataclass
class NonFiniteBudget:
    """The NaN policy: a step whose loss is not finite is skipped (no weight saw it); more than
    ``limit`` such steps stop the run with :class:`TrainingStopped`."""

    limit: int
    count: int = 0

    def record(self, error: NonFiniteLoss | NonFiniteStep, last_good: str) -> None:
        self.count += 1
        if self.count > self.limit:
            raise TrainingStopped(
                f"{self.count} steps with non-finite losses (train.max_nonfinite_steps={self.limit}); "
                f"last good checkpoint: {last_good}"
            ) from None


class Throughput:
    """Images per second between two log lines (each log line reads the device, so the span is
    the work really done) and the minutes the remaining steps take at that rate."""

    def __init__(self, batch_size: int, total_steps: int, step: int) -> None:
        self.batch_size, self.total_steps = batch_size, total_steps
        self.since = (step, time.perf_counter())

    def tick(self, step: int) -> dict[str, float]:
        (last, then), now = self.since, time.perf_counter()
        self.since = (step, now)
        if step <= last or now <= then:
            return {}
        steps_per_s = (step - last) / (now - then)
        return {
            "images_per_s": round(steps_per_s * self.batch_size, 2),
            "eta_min": round((self.total_steps - step) / steps_per_s / 60, 1),
        }


class RunLock:
    """One writer per run folder: an exclusive ``flock`` on ``RUN/.lock`` while a process trains it.
    The kernel drops the lock when the process ends, however it ends, so a crash leaves none to
    take over; the file names the holder for the refusal's message."""

    def __init__(self) -> None:
        self.file = None

    def acquire(self, run_dir: Path) -> None:
        if fcntl is None:  # no flock (Windows): one writer is the user's to keep
            return
        path = Path(run_dir) / ".lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"{run_dir} is being trained by {holder} right now; a run has one writer: wait for it to finish "
                "or stop it (Ctrl-C saves), or start a new run"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.file = handle

    def release(self) -> None:
        if self.file is None:
            return
        # The file stays (removing it would let a process that opened it just before lock a file
        # no longer in the folder while a third locks a new one); emptied, it names no holder.
        self.file.seek(0)
        self.file.truncate()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.file = None


@dataclass
class SkippedUpdates:
    """The steps whose updates the device guard skipped (fused Adam's ``found_inf``), read from the
    device only when the loop asks (when it logs or saves): one host sync per check instead of
    one per optimizer step. Each step's flags come with its batch's files, for the message."""

    pending: list[tuple[int, list[str], torch.Tensor, list[str]]] = field(default_factory=list)

    def add(self, step: int, names: list[str], flags: torch.Tensor | None, files: list[str]) -> None:
        if flags is not None:
            self.pending.append((step, names, flags, files))

    def take(self) -> list[NonFiniteStep]:
        """The skipped updates since the last call, oldest first."""
        if not self.pending:
            return []
        values = torch.cat([flags for _, _, flags, _ in self.pending]).tolist()  # the one sync
        found, start = [], 0
        for step, names, _, files in self.pending:
            row, start = values[start : start + len(names)], start + len(names)
            found += [
                NonFiniteStep(step, name, "nan or inf", files) for name, flag in zip(names, row, strict=True) if flag
            ]
        self.pending.clear()
        return found


@dataclass(frozen=True)
class NonFiniteStep:
    """One update skipped for a non-finite loss: the step, the loss (optimizer) name, its value
    where the host saw it, and the batch's image files."""

    step: int
    loss: str
    value: str
    files: list[str]

    def __str__(self) -> str:
        return f"non-finite {self.loss} loss ({self.value}); its update was skipped"


@dataclass
class BestScore:
    """The best validation score so far (``{"metric", "value", "step"}`` or ``None``), as stored
    in checkpoints; :meth:`improves` tells whether a new value beats it."""

    best: dict | None
    higher_is_better: bool = False

    def improves(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher_is_better else value < self.best["value"]

    def update(self, metric: str, value: float, step: int) -> None:
        self.best = {"metric": metric, "value": value, "step": step}
