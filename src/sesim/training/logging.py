"""Run artefacts: numbered run directories, JSONL + TensorBoard scalars, sample grids with an HTML page."""

from __future__ import annotations

import datetime
import html
import json
import re
import sys
import time
from pathlib import Path
from typing import TextIO

import torch
from tqdm import tqdm

from sesim.data.images import image_grid, to_image
from sesim.errors import ConfigError


def new_run_dir(out_dir: str | Path, name: str) -> Path:
    """``out_dir/NNN-name``, numbered after the highest existing one: nothing is ever overwritten."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".sesim-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"log.out_dir: cannot write in {out_dir} ({error.strerror or error}); "
            "choose a writable folder with --set log.out_dir=DIR"
        ) from None
    numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    for number in range(max(numbers, default=0) + 1, max(numbers, default=0) + 1000):
        run_dir = out_dir / f"{number:03d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory in {out_dir}")


def _now() -> str:
    """Wall-clock time of a log line, UTC, to the millisecond (ISO 8601)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class RunLogger:
    """Scalars to ``log.jsonl`` (always) and TensorBoard (when installed and enabled)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "log.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                self.writer = None
            else:
                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps({"step": step, "time": _now(), **scalars}) + "\n")
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)

    def event(self, step: int, name: str, **fields) -> None:
        """A non-scalar record (e.g. a skipped step and its files), to ``log.jsonl`` only."""
        with self.path.open("a") as file:
            file.write(json.dumps({"step": step, "time": _now(), "event": name, **fields}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """Training progress on ``stream`` (stderr): a tqdm bar on a terminal; anywhere else (a log
    file, a cluster job's output) a plain line at each logged step instead of a bar redrawn ten
    times a second with carriage returns. ``write`` (notes, warnings) works either way, and when off."""

    def __init__(self, total: int, initial: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        self.plain = enabled and not terminal
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and terminal), file=self.stream,
                        unit="step", dynamic_ncols=True)  # fmt: skip
        self.total, self.since = total, (initial, time.perf_counter())

    def update(self) -> None:
        self.bar.update(1)

    def write(self, text: str) -> None:
        self.bar.write(text, file=self.stream)

    def show(self, step: int, scalars: dict[str, float]) -> None:
        """The logged losses (``loss/NAME``) beside the bar, or as one line with the rate since the last."""
        losses = {k.split("/")[-1]: f"{v:.3f}" for k, v in scalars.items() if k.startswith("loss/")}
        if "images_per_s" in scalars:
            losses["img/s"] = f"{scalars['images_per_s']:.1f}"
        if "eta_min" in scalars:  # the projected finish, on the wall clock
            finish = datetime.datetime.now() + datetime.timedelta(minutes=scalars["eta_min"])
            losses["done"] = finish.strftime("%H:%M" if scalars["eta_min"] < 12 * 60 else "%a %d %b %H:%M")
        self.bar.set_postfix(losses)
        if self.plain:
            (last, then), now = self.since, time.perf_counter()
            rate = (step - last) / (now - then) if now > then else 0.0
            fields = " ".join(f"{name} {value}" for name, value in losses.items())
            print(f"step {step}/{self.total}  {fields}  {rate:.2f} step/s", file=self.stream, flush=True)
            self.since = (step, now)

    def close(self) -> None:
        self.bar.close()


def save_grid(path: Path, columns: list[torch.Tensor]) -> Path:
    """One row per batch item, one column per tensor (``(B, 3, H, W)`` in ``[-1, 1]``), as PNG."""
    grid = image_grid([[to_image(column[i]) for column in columns] for i in range(columns[0].shape[0])], "black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def write_samples_page(run_dir: Path, title: str) -> Path:
    """``index.html`` listing the sample grids, newest first."""
    grids = sorted((run_dir / "samples").glob("step_*.png"), reverse=True)
    items = "\n".join(
        f'<h3>{html.escape(p.stem)}</h3><img src="samples/{html.escape(p.name)}" style="image-rendering:pixelated">'
        for p in grids
    )
    page = run_dir / "index.html"
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>columns: real A | fake B | real B</p>\n{items}\n"
    )
    return page
