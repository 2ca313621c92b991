"""Train several methods on maps (aerial -> map, files 1-1000) with the same budget, the same
networks and the same backbone, and score each on the held-out files 1001-1096 with the
user-facing commands (``sesim translate`` then ``sesim eval --paired-with``: GcGAN protocol,
PSNR, SSIM, EfficientNet-Lite0 Frechet distance).

    python benchmarks/maps_compare.py --data ../shared/data/maps --steps 1000 \
        --out runs/maps_compare --results benchmarks/results/maps_compare_cpu.json

The results file is rewritten after every method, so an interrupted comparison keeps what it
finished; ``--methods`` reruns a subset and merges it in.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import cpu_name
from maps import CPU_RECIPE, training_split
from maps_eval import held_out_folders
from sesim.cli import main as sesim
from sesim.config import load_config
from sesim.training.loop import train

# label -> (preset, overrides that make it that method); everything else is shared.
METHODS = {
    "FSeSim": ("fsesim", []),
    "LSeSim": ("lsesim", []),
    "CUT": ("cut", []),
    "CycleGAN": ("cyclegan", []),
    "GAN alone": ("gan-only", []),
}
SHARED = ["data.preprocess=crop", "train.seed=0"]


def final_losses(run_dir: Path) -> dict:
    """Mean of each loss over the last three logged points of ``log.jsonl``."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if any(k.startswith("loss/") for k in r)][-3:]
    keys = sorted({k for r in records for k in r if k.startswith("loss/")})
    return {k: round(sum(r[k] for r in records if k in r) / sum(k in r for r in records), 4) for k in keys}


def run_method(label: str, split: Path, held_out: tuple[Path, Path], steps: int, out: Path) -> dict:
    preset, extra = METHODS[label]
    overrides = [*CPU_RECIPE, *SHARED, *extra, f"data.root={split}", f"train.max_steps={steps}",
                 f"log.out_dir={out}", "log.progress=false"]  # fmt: skip
    config = load_config(preset, overrides)
    started = time.time()
    run_dir = train(config)
    train_seconds = time.time() - started
    aerial, truth = held_out
    scratch = Path(tempfile.mkdtemp(prefix="sesim-maps-compare-"))
    translated, report = scratch / "translated", scratch / "eval"
    assert sesim(["translate", str(run_dir), str(aerial), str(translated), "--device", "cpu"]) == 0
    assert sesim(["eval", "--real", str(truth), "--fake", str(translated), "--paired-with", str(truth),
                  "--out", str(report), "--device", "cpu"]) == 0  # fmt: skip
    scores = json.loads(report.with_suffix(".json").read_text())
    return {
        "preset": preset,
        "overrides": extra,
        "run_dir": str(run_dir),
        "train_seconds": round(train_seconds, 1),
        "generator_parameters": sum(p.numel() for p in torch.load(run_dir / "checkpoints" / "latest.pt",
                                                                  weights_only=True)["networks"]["generator"].values()),
        "final_losses": final_losses(run_dir),
        "paired": scores["paired"],
        "fd_efficientnet": scores["fd_efficientnet"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/maps")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default="runs/maps_compare")
    parser.add_argument("--results", default="benchmarks/results/maps_compare_cpu.json")
    args = parser.parse_args()
    maps, out, results_path = Path(args.data), Path(args.out), Path(args.results)
    split = training_split(maps, out / "split")
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if results.get("steps") not in (None, args.steps):
        parser.error(f"--results: {results_path} holds a {results['steps']}-step comparison; use another file")
    results |= {
        "steps": args.steps,
        "recipe": [*CPU_RECIPE, *SHARED],
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    results.setdefault("methods", {})
    held_out = held_out_folders(maps, Path(tempfile.mkdtemp(prefix="sesim-maps-held-out-")))
    for label in args.methods:
        results["methods"][label] = run_method(label, split, held_out, args.steps, out)
        results["methods"] = {k: results["methods"][k] for k in METHODS if k in results["methods"]}
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({label: results["methods"][label]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
