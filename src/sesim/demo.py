"""``sesim demo``: train a small translator on synthetic domains and report how well it keeps layout."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sesim.config import Update, load_config, updates
from sesim.data.images import image_grid, list_images, load_rgb, to_image, to_tensor
from sesim.data.synthetic import write_domains
from sesim.errors import ConfigError
from sesim.evaluation.layout import colour_scores, layout_iou
from sesim.inference import load_generator, pick_device, translate_tensor
from sesim.networks import build_generator
from sesim.outputs import written_in_place
from sesim.training.loop import train
from sesim.training.resolve import resolve_run


def _score(generator, inputs: torch.Tensor, labels: list[np.ndarray]) -> tuple[torch.Tensor, list[float]]:
    outputs = translate_tensor(generator, inputs)
    scores = [layout_iou(np.asarray(to_image(o)), lab) for o, lab in zip(outputs, labels, strict=True)]
    return outputs, scores


def loss_curves(run_dir: Path, path: Path) -> Path:
    """The logged losses of the run against the step, one line each (from ``log.jsonl``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "loss/g" in r]
    figure, axis = plt.subplots(figsize=(6, 3))
    for key in sorted({k for r in records for k in r if k.startswith("loss/")}):
        points = [(r["step"], r[key]) for r in records if key in r]
        axis.plot(*zip(*points, strict=True), label=key.removeprefix("loss/"))
    axis.set_xlabel("step")
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def demo_data(root: Path) -> Path:
    """The demo's domains, written once per ``--out`` folder. They are written to a hidden folder
    and renamed into place when complete, so a demo interrupted while writing them writes them
    again next time instead of training and scoring on part of them."""
    if root.is_dir():
        return root
    with written_in_place(root) as partial:
        write_domains(partial, train=200, test=8, size=64, seed=0)
    return root


def _steps(summary: dict) -> str:
    """The steps that trained, and the planned ones when the time budget stopped the run earlier."""
    if summary["steps"] < summary["max_steps"]:
        return f"{summary['steps']} of {summary['max_steps']} steps: the time budget stopped it"
    return f"{summary['steps']} steps"


def summary_lines(summary: dict) -> str:
    """The demo's result in two lines for the terminal (``report.json`` has it all)."""
    budget = summary["steps"] < summary["max_steps"]
    lost = [f"{name} on {count}" for name, count in summary["lost"].items() if count]
    return (
        f"layout mIoU: untrained {summary['untrained']:.3f} -> trained {summary['trained']:.3f} "
        f"(ground truth {summary['ground_truth']:.3f}) in {summary['seconds']} s"
        + (f", {summary['steps']} of {summary['max_steps']} steps (the time budget)" if budget else "")
        + "\ncolour error per class (RGB): "
        + ", ".join(f"{name} {error:.0f}" for name, error in summary["colour_error"].items())
        + (
            f"; drawn in another class's colour: {', '.join(lost)} of {len(summary['per_image'])} images"
            if lost
            else "; no class lost"
        )
    )


def run_demo(out_dir: str = "runs", steps: int | None = None, overrides: tuple[str, ...] = ()) -> Path:
    """Generate data, train, and write ``report.html`` / ``report.png`` / ``report.json``; returns the run dir."""
    started = time.time()
    changes = updates(overrides)
    keys = {change.key: change.flag for change in changes}
    for key, instead in (("data.root", "the demo trains and scores on its own data"), ("log.out_dir", "use --out")):
        if key in keys:
            raise ConfigError(f"demo: {keys[key]}: {instead}")
    if steps is not None and "train.max_steps" in keys:
        raise ConfigError(f"demo: --steps {steps} and {keys['train.max_steps']} both set the steps; give one")
    if steps is not None and steps < 1:
        raise ConfigError(f"demo: --steps must be at least 1, got {steps}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"demo: --out {out_dir} is a file; choose a folder (it is created if missing)")
    changes.append(Update("log.out_dir", str(out_dir), f"--out {out_dir}"))
    if steps is not None:
        changes.append(Update("train.max_steps", steps, f"--steps {steps}"))
    load_config("demo", changes)  # a bad --set is one line before the demo's data is written
    data_root = demo_data(Path(out_dir) / "demo-data")
    run = resolve_run("demo", data=data_root, overrides=changes)
    config = run.config
    run_dir = train(run)

    device = pick_device(config.train.device, "train.device")
    torch.manual_seed(config.train.seed)
    untrained = build_generator(config.model.generator).to(device).eval()
    trained, checkpoint = load_generator(run_dir / "checkpoints" / "latest.pt", device)
    test_files = list_images(data_root / "testA")
    inputs = torch.stack([to_tensor(load_rgb(p)) for p in test_files]).to(device)
    truth = torch.stack([to_tensor(load_rgb(data_root / "testB" / p.name)) for p in test_files])
    labels = [np.asarray(Image.open(data_root / "testL" / p.name)).astype(np.int64) for p in test_files]
    before, scores_before = _score(untrained, inputs, labels)
    after, scores_after = _score(trained, inputs, labels)
    scores_truth = [layout_iou(np.asarray(to_image(t)), lab) for t, lab in zip(truth, labels, strict=True)]

    rows = [inputs.cpu(), before.cpu(), after.cpu(), truth]
    tiles = [[to_image(col[i]).resize((128, 128), Image.NEAREST) for col in rows] for i in range(len(test_files))]
    image_grid(tiles).save(run_dir / "report.png")
    loss_curves(run_dir, run_dir / "losses.png")
    summary = {
        "metric": "layout mIoU (nearest-centroid segmentation of the output against the input's labels)",
        "untrained": float(np.mean(scores_before)),
        "trained": float(np.mean(scores_after)),
        "ground_truth": float(np.mean(scores_truth)),
        "per_image": [round(s, 3) for s in scores_after],
        **colour_scores(after.cpu(), truth, labels),
        "steps": checkpoint["step"],  # what trained: the time budget may stop it before max_steps
        "max_steps": config.train.max_steps,
        "seed": config.train.seed,
        "seconds": round(time.time() - started, 1),
        "device": str(device),
    }
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2))
    colour_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{error:.1f}</td><td>{summary['lost'][name]} of {len(test_files)}</td>"
        "</tr>"
        for name, error in summary["colour_error"].items()
    )
    (run_dir / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>SeSim demo</title><h1>SeSim demo</h1>"
        "<p>Columns: input (flat layout) | untrained generator | trained generator | ground truth.</p>"
        f"<table border=1 cellpadding=4><tr><th>{html.escape(summary['metric'])}</th><th>mean</th></tr>"
        f"<tr><td>untrained</td><td>{summary['untrained']:.3f}</td></tr>"
        f"<tr><td>trained ({_steps(summary)})</td><td>{summary['trained']:.3f}</td></tr>"
        f"<tr><td>ground-truth rendering</td><td>{summary['ground_truth']:.3f}</td></tr></table>"
        "<h2>Every class in its own colour?</h2><p>Distance (RGB, 0-255) of each class's mean colour in the "
        "trained translation to the ground-truth rendering's, and on how many test images the class was drawn "
        "nearer another class's colour.</p><table border=1 cellpadding=4><tr><th>class</th><th>colour error</th>"
        f"<th>lost on</th></tr>{colour_rows}</table>"
        "<p><img src='report.png'></p><h2>Losses</h2><p><img src='losses.png'></p>"
        "<p><a href='index.html'>training samples</a></p>"
    )
    return run_dir
