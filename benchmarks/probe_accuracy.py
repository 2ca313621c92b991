"""How close ``sesim train ... --probe`` comes to the run it measures: the probe's peak memory and
median step time against a real run of the same configuration (its peak resident memory, and
the median of its per-step times from ``log.jsonl``), each in a fresh process.

    python benchmarks/probe_accuracy.py --out benchmarks/results/probe_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_name, emit

MAPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "maps"
REPORT = ("import resource, sys; from sesim.cli import main; code = main(sys.argv[1:]); "
          "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024); sys.exit(code)")  # fmt: skip


def sesim(argv: list[str]) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", REPORT, *argv], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    text, peak = done.stdout.rsplit("MAXRSS", 1)
    return text, int(peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fsesim")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out")
    args = parser.parse_args()
    import torch

    from sesim.data.synthetic import write_domains

    with tempfile.TemporaryDirectory() as folder:
        data = MAPS if (MAPS / "trainA").is_dir() else write_domains(Path(folder) / "data", 4, 1, args.crop + 30, 0)
        runs = Path(folder) / "runs"
        sets = ["loss.backbone=vgg16", "loss.backbone_weights=random", f"data.crop_size={args.crop}",
                f"data.load_size={args.crop + 30}", f"train.batch_size={args.batch}", "data.workers=0",
                f"train.max_steps={args.steps}", "log.every=1", "log.progress=false", "log.tensorboard=false",
                "log.sample_every=100000", "log.checkpoint_every=100000", f"log.out_dir={runs}"]  # fmt: skip
        flags = ["train", args.preset, "--data", str(data), *[a for s in sets for a in ("--set", s)]]
        text, _ = sesim([*flags, "--probe", "--json", "--no-search"])
        probed = json.loads(text)
        _, run_peak = sesim(flags)
        (run_dir,) = runs.iterdir()
        rates = [json.loads(line)["images_per_s"] for line in (run_dir / "log.jsonl").read_text().splitlines()
                 if '"images_per_s"' in line][2:]  # fmt: skip
    run_step = statistics.median(args.batch / rate for rate in rates)
    probe_peak = probed["peak_memory"]["resident"]
    result = {
        "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "preset": args.preset, "crop": args.crop, "batch": args.batch, "data": "maps" if data == MAPS else "synthetic",
        "probe_step_s": round(probed["step_s_median"], 3), "run_step_s": round(run_step, 3),
        "step_ratio": round(probed["step_s_median"] / run_step, 3),
        "probe_peak_gib": round(probe_peak / 2**30, 3), "run_peak_gib": round(run_peak / 2**30, 3),
        "memory_ratio": round(probe_peak / run_peak, 3), "run_steps_timed": len(rates),
    }  # fmt: skip
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
