"""Seeded, equal-budget comparisons: a grid of methods x seeds x tasks, every cell trained and
scored through the user commands (``sesim train``, ``sesim translate``, ``sesim eval``).

    python benchmarks/study.py layouts --seeds 0 1 2            # the demo's synthetic task (+ ablations)
    python benchmarks/study.py maps --seeds 0 1 2 --steps 1000  # aerial -> map and map -> aerial
    python benchmarks/study.py layouts --table                  # mean +- std of what is there

Each finished cell is appended to one JSON file per study (``--results``; written atomically), so
a study interrupted at any point continues where it stopped when run again, in as many sittings
as it takes. Cells are equal in everything but what makes the method: the task's networks, data,
steps, batch, learning rate and schedule are shared; the method's own keys (``method``,
``loss.structure``, ``loss.learned``, ``loss.augment``, ``loss.flip_equivariance``, every
``weights.*`` and ``train.pool_size``) come from its preset. ``benchmarks/tables.py`` renders
the tables (mean +- std over seeds, the per-seed values, and which differences exceed the
spread) from the JSON.

Tasks:
- ``layouts``: the demo's synthetic domains (flat label layouts -> textured renderings, ground
  truth known): layout mIoU against the labels, per-class colour error against the ground-truth
  rendering and the number of classes drawn in another class's colour; PSNR/SSIM against the
  ground truth (``sesim eval --paired-with``).
- ``maps``: aerial -> map and map -> aerial on the maps set, trained on files 1-1000, scored on
  1001-1096: the GcGAN protocol (RMSE, pixel accuracy), PSNR, SSIM, EfficientNet-Lite0 FD.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name
from maps import CPU_RECIPE, training_split
from maps_eval import held_out_folders
from sesim.config import load_config
from sesim.data.images import list_images
from sesim.data.synthetic import write_domains
from sesim.evaluation.layout import class_colours, layout_iou

# The keys that make a method; every other key is the task's, shared by all cells.
METHOD_KEYS = ("method", "loss.structure", "loss.learned", "loss.augment", "loss.flip_equivariance", "train.pool_size")
METHODS = {"FSeSim": "fsesim", "LSeSim": "lsesim", "CUT": "cut", "CycleGAN": "cyclegan", "GAN alone": "gan-only"}
# The demo's network keys. Blur-pool resampling and 256 queries per tap: the demo preset before
# 2026-12-02 (the first candidates below ran with them, and the layouts study still does).
BLURRED_256 = ["loss.num_queries=256", "model.generator.antialias=true", "model.discriminator.antialias=true"]
# Strided resampling and 128 queries: about 40% less time per step (an AVX2-only 2-core AMD EPYC:
# 135 vs 235 ms at batch 4), where blur-pool runs G's and D's resampling convolutions at full size.
STRIDED_128 = ["loss.num_queries=128", "model.generator.antialias=false", "model.discriminator.antialias=false"]
# Candidate recipes for `sesim demo` (the demo preset with these changes), chosen by their scores
# here, not by hand; the budget is 5 minutes on a fresh 2-core machine, start-up included.
DEMO_CANDIDATES = {  # every key a candidate changes is spelled out: the demo preset follows the winner
    "400 steps, lr 0.002 (before)": (
        None,
        ["train.max_steps=400", "train.lr=0.002", "weights.structure=10", *BLURRED_256],
    ),
    "1200 steps, lr 0.0005": (None, ["train.max_steps=1200", "train.lr=0.0005", "weights.structure=10", *BLURRED_256]),
    "1200 steps, lr 0.001": (None, ["train.max_steps=1200", "train.lr=0.001", "weights.structure=10", *BLURRED_256]),
    "1800 steps, lr 0.0005": (None, ["train.max_steps=1800", "train.lr=0.0005", "weights.structure=10", *BLURRED_256]),
    "2200 steps, lr 0.0005": (None, ["train.max_steps=2200", "train.lr=0.0005", "weights.structure=10", *BLURRED_256]),
    "1800 steps, lr 0.0005, structure weight 20": (
        None,
        ["train.max_steps=1800", "train.lr=0.0005", "weights.structure=20", *BLURRED_256],
    ),
    # The layouts study's steadiest cell: learned heads without colour jitter (the classes differ by colour).
    "LSeSim without augmentation, 900 steps": (
        "lsesim",
        ["loss.augment=false", "train.max_steps=900", "train.lr=0.0005", *BLURRED_256],
    ),
    # On an AVX2-only 2-core CPU (AMD EPYC) a step of the 1800-step recipe takes 2.5x the Intel
    # Xeon's: the 4-minute cap stopped it at step ~960, before its decay (mIoU 0.71, water lost).
    "1000 steps, 128 queries": (
        None,
        ["train.max_steps=1000", "train.lr=0.0005", "weights.structure=20", "loss.num_queries=128",
         "model.generator.antialias=true", "model.discriminator.antialias=true"],
    ),
    "1200 steps, 128 queries, strided resampling": (
        None,
        ["train.max_steps=1200", "train.lr=0.0005", "weights.structure=20", *STRIDED_128],
    ),
    "1500 steps, 128 queries, strided resampling": (
        None,
        ["train.max_steps=1500", "train.lr=0.0005", "weights.structure=20", *STRIDED_128],
    ),
}  # fmt: skip
# The paper's ablations on the synthetic task, as changes to FSeSim (fixed vs learned is FSeSim vs LSeSim).
ABLATIONS = {
    "FSeSim l1": ("fsesim", ["loss.mode=l1"]),
    "FSeSim local (window 8)": ("fsesim", ["loss.window=8"]),
    "LSeSim without augmentation": ("lsesim", ["loss.augment=false"]),
}


def method_overrides(preset: str) -> list[str]:
    """``--set`` assignments that give a task's recipe this preset's method (and nothing else)."""
    config = load_config(preset).model_dump(mode="json")
    out = []
    for key in METHOD_KEYS:
        section, _, name = key.partition(".")
        value = config[section][name] if name else config[section]
        out.append(f"{key}={json.dumps(value)}")
    out += [f"weights.{name}={value}" for name, value in config["weights"].items()]
    return out


@dataclass(frozen=True)
class Task:
    name: str
    preset: str  # the recipe's base
    recipe: list[str]  # shared by every cell of the task
    steps: int | None  # None: each cell sets its own budget
    metric: str  # the headline score (for the table's ranking)
    higher_is_better: bool
    # label -> (preset whose method keys the cell takes, or None: the task's own; extra --set)
    cells: dict[str, tuple[str | None, list[str]]] = field(default_factory=dict)


def tasks(steps: int | None) -> dict[str, list[Task]]:
    every_method = {label: (preset, []) for label, preset in METHODS.items()}
    layouts = Task("layouts", "demo", BLURRED_256, steps or 600, "layout_miou", True, {**every_method, **ABLATIONS})
    maps_recipe = [*CPU_RECIPE, "data.preprocess=crop", "data.workers=2"]
    maps = [
        Task("maps aerial->map", "fsesim", [*maps_recipe, "data.direction=AtoB"], steps or 1000, "rmse", False,
             every_method),
        Task("maps map->aerial", "fsesim", [*maps_recipe, "data.direction=BtoA"], steps or 1000, "psnr", True,
             every_method),
    ]  # fmt: skip
    demo = Task("demo", "demo", [], steps, "layout_miou", True, DEMO_CANDIDATES)
    return {"layouts": [layouts], "maps": maps, "demo": [demo]}


def sesim(*args: str) -> str:
    """Run a user command in its own process (as a user would); its stdout, or an error with its stderr."""
    done = subprocess.run([sys.executable, "-m", "sesim.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sesim {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def final_losses(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in records if any(k.startswith("loss/") for k in r)][-3:]
    keys = sorted({k for r in last for k in r if k.startswith("loss/")})
    return {k: round(statistics.mean(r[k] for r in last if k in r), 4) for k in keys}


def score_layouts(translated: Path, data: Path) -> dict:
    ious, errors, lost = [], {}, []
    for path in list_images(data / "testA"):
        output = np.asarray(Image.open(translated / f"{path.stem}.png").convert("RGB"))
        truth = np.asarray(Image.open(data / "testB" / path.name).convert("RGB"))
        labels = np.asarray(Image.open(data / "testL" / path.name)).astype(np.int64)
        ious.append(layout_iou(output, labels))
        per_class, lost_here = class_colours(output, truth, labels)
        for c, value in per_class.items():
            errors.setdefault(str(c), []).append(value)
        lost.append(len(lost_here))
    return {
        "layout_miou": round(float(np.mean(ious)), 4),
        "colour_error": {c: round(float(np.mean(v)), 2) for c, v in sorted(errors.items())},
        "colour_error_mean": round(float(np.mean([np.mean(v) for v in errors.values()])), 2),
        "lost_classes_per_image": round(float(np.mean(lost)), 3),
    }


def run_cell(task: Task, label: str, seed: int, data: Path, held_out: tuple[Path, Path], out: Path) -> dict:
    preset, extra = task.cells[label]
    overrides = [*task.recipe, *(method_overrides(preset) if preset else []), f"train.seed={seed}",
                 *([f"train.max_steps={task.steps}"] if task.steps else []), *extra, f"log.out_dir={out}",
                 "log.progress=false", "log.tensorboard=false", "train.device=cpu"]  # fmt: skip
    started = time.time()
    printed = sesim("train", task.preset, "--data", str(data), *[a for o in overrides for a in ("--set", o)])
    seconds = time.time() - started
    run_dir = Path(printed.strip().splitlines()[-1].split("finished: ", 1)[1])
    source, truth = held_out
    scratch = Path(tempfile.mkdtemp(prefix="sesim-study-"))
    translated, report = scratch / "translated", scratch / "eval"
    sesim("translate", str(run_dir), str(source), str(translated), "--device", "cpu")
    metrics = "paired" if task.name in ("layouts", "demo") else "paired,fd_efficientnet"
    sesim("eval", "--real", str(truth), "--fake", str(translated), "--paired-with", str(truth),
          "--metrics", metrics, "--out", str(report), "--device", "cpu")  # fmt: skip
    scores = json.loads(report.with_suffix(".json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    cell = {"task": task.name, "method": label, "seed": seed, "run_dir": str(run_dir), "config": config,
            "train_seconds": round(seconds, 1), "final_losses": final_losses(run_dir), **scores["paired"]}  # fmt: skip
    if "fd_efficientnet" in scores:
        cell["fd_efficientnet"] = scores["fd_efficientnet"]
    if task.name in ("layouts", "demo"):
        cell.update(score_layouts(translated, data))
    return cell


def write_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(json.dumps(document, indent=1) + "\n")
    os.replace(temporary, path)


def task_data(task: Task, maps: Path, scratch: Path) -> tuple[Path, tuple[Path, Path]]:
    """The training folder and the held-out (source, ground truth) folders of a task."""
    if task.name in ("layouts", "demo"):
        data = write_domains(scratch / "layouts", train=200, test=16, size=64, seed=0)
        return data, (data / "testA", data / "testB")
    if not (maps / "trainA").is_dir():
        raise SystemExit(f"study.py: the maps set is not at {maps} (--maps DIR)")
    split = training_split(maps, scratch / "maps-split")
    aerial, truth = held_out_folders(maps, scratch / "maps-held-out")
    return split, ((aerial, truth) if "aerial->map" in task.name else (truth, aerial))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=["layouts", "maps", "demo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, help="training steps per cell (default: 600 layouts, 1000 maps; demo: each candidate's)"
    )
    parser.add_argument("--cells", nargs="+", metavar="LABEL", help="only these methods/ablations")
    parser.add_argument("--maps", default="../shared/data/maps", help="the maps set (trainA/, trainB/)")
    parser.add_argument("--out", default="runs/study", help="where the cells' runs go")
    parser.add_argument("--results", help="the study's JSON (default: benchmarks/results/study_STUDY_cpu.json)")
    parser.add_argument("--max-cells", type=int, help="stop after this many new cells (one sitting)")
    parser.add_argument("--list", action="store_true", help="print the grid and what is done; train nothing")
    args = parser.parse_args()
    results_path = Path(args.results or f"benchmarks/results/study_{args.study}_cpu.json")
    document = json.loads(results_path.read_text()) if results_path.is_file() else {"cells": []}
    chosen = tasks(args.steps)[args.study]
    for task in chosen:
        unknown = [c for c in args.cells or [] if c not in task.cells]
        if unknown:
            parser.error(f"--cells: unknown {', '.join(unknown)}; choose from {', '.join(task.cells)}")
    done = {(c["task"], c["method"], c["seed"]) for c in document["cells"]}
    budget = {t["name"]: t["steps"] for t in document.get("tasks", [])}
    grid = [(task, label, seed) for task in chosen for label in (args.cells or task.cells) for seed in args.seeds]
    todo = [(task, label, seed) for task, label, seed in grid if (task.name, label, seed) not in done]
    for task in chosen:
        if budget.get(task.name) not in (None, task.steps):
            parser.error(f"--results: {results_path} holds {task.name} at {budget[task.name]} steps, not {task.steps}")
    if args.list:
        for task, label, seed in grid:
            print(f"{'todo' if (task, label, seed) in todo else 'done'}  {task.name} | {label} | seed {seed}")
        return 0
    document["tasks"] = [
        {"name": t.name, "preset": t.preset, "recipe": t.recipe, "steps": t.steps, "metric": t.metric,
         "higher_is_better": t.higher_is_better, "cells": {k: list(v) for k, v in t.cells.items()}}
        for t in chosen
    ]  # fmt: skip
    cpu = cpu_name()
    # The first sitting's machine; each cell names its own CPU (sittings may run on different machines).
    document.setdefault("machine", {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__})
    scratch = Path(args.out) / "data"
    prepared: dict[str, tuple] = {}
    for count, (task, label, seed) in enumerate(todo):
        if args.max_cells is not None and count >= args.max_cells:
            break
        if task.name not in prepared:
            prepared[task.name] = task_data(task, Path(args.maps), scratch)
        data, held_out = prepared[task.name]
        cell = run_cell(task, label, seed, data, held_out, Path(args.out) / "runs")
        cell["date"] = time.strftime("%Y-%m-%d %H:%M")
        cell["cpu"] = cpu
        document["cells"].append(cell)
        write_atomically(results_path, document)
        print(json.dumps({k: cell[k] for k in ("task", "method", "seed", task.metric, "train_seconds")}), flush=True)
    left = len(todo) - min(len(todo), args.max_cells if args.max_cells is not None else len(todo))
    print(f"{len(grid) - left} of {len(grid)} cells done; results in {results_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
