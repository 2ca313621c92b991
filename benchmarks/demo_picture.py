"""Run ``sesim demo`` as a user would (a fresh process per seed) and keep what it wrote: the
README's picture (``docs/demo_report.png``, ``docs/demo_losses.png``: the command's own
``report.png`` and ``losses.png`` of the first seed) and ``benchmarks/results/demo_cpu.json`` (every
seed's ``report.json``), from which ``benchmarks/tables.py`` writes the demo table.

    python benchmarks/demo_picture.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import cpu_name  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "demo_cpu.json"))
    parser.add_argument("--pictures", default=str(ROOT / "docs"), help="where demo_report.png and demo_losses.png go")
    args = parser.parse_args()
    runs = []
    for index, seed in enumerate(args.seeds):
        out = Path(tempfile.mkdtemp(prefix="sesim-demo-"))
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "sesim.cli", "demo", "--out", str(out), "--set", f"train.seed={seed}",
             "--set", "log.progress=false"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        run_dir = next(out.glob("*-demo"))
        report = json.loads((run_dir / "report.json").read_text())
        report["command_seconds"] = round(time.time() - started, 1)  # start-up and data included
        runs.append(report)
        print(done.stdout.strip(), flush=True)
        if index == 0:
            Path(args.pictures).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "report.png", Path(args.pictures) / "demo_report.png")
            shutil.copyfile(run_dir / "losses.png", Path(args.pictures) / "demo_losses.png")
        shutil.rmtree(out, ignore_errors=True)
    document = {"machine": cpu_name(), "date": time.strftime("%Y-%m-%d"), "runs": runs}
    Path(args.results).write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
