"""Start-up time of the `sesim` command: `--help`, `train --help` and `--version`, and a training
run's start up to its first step (`train demo --dry-run` on 64 px synthetic domains: config,
every image's header, the networks and the backbone's weights, every check of a real start), each a
fresh process (what a user waits for before anything happens), against the same commands at
another revision timed in the same interleaved rounds.

    python benchmarks/startup.py --compare-revision 501e4b0 --out benchmarks/results/startup_cpu.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import emit, interleaved_medians, machine
from sesim.data.synthetic import write_domains

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"], "train --help": ["train", "--help"], "--version": ["--version"],
    "train demo --dry-run": ["train", "demo", "--data", "{data}", "--dry-run", "--set", "log.out_dir={data}/runs"],
}  # fmt: skip


def runner(arguments: list[str], source: Path):
    environment = {**os.environ, "PYTHONPATH": str(source)}
    command = [sys.executable, "-m", "sesim.cli", *arguments]
    return lambda: subprocess.run(command, env=environment, stdout=subprocess.DEVNULL, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--compare-revision", metavar="REV", help="also time the CLI as it was at this commit")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    sources = {"now": ROOT / "src"}
    scratch = None
    data = Path(tempfile.mkdtemp())
    write_domains(data, train=20, test=2, size=64, seed=0)
    if args.compare_revision:
        scratch = Path(tempfile.mkdtemp())
        archive = subprocess.run(["git", "archive", args.compare_revision, "src"], cwd=ROOT, capture_output=True)
        if archive.returncode:
            parser.error(f"--compare-revision {args.compare_revision}: not a revision here")
        subprocess.run(["tar", "x", "-C", str(scratch)], input=archive.stdout, check=True)
        sources[args.compare_revision] = scratch / "src"
    try:
        functions = {
            f"{label} @ {name}": runner([a.replace("{data}", str(data)) for a in arguments], source)
            for name, source in sources.items()
            for label, arguments in COMMANDS.items()
        }
        medians = interleaved_medians(functions, torch.device("cpu"), args.repeats, warmup=1)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    rows = [
        {"command": f"sesim {label}", **{f"{name}_ms": round(medians[f"{label} @ {name}"], 1) for name in sources}}
        for label in COMMANDS
    ]
    result = {"benchmark": "startup", "machine": machine(torch.device("cpu")), "repeats": args.repeats, "rows": rows}
    emit(result, args.out)


if __name__ == "__main__":
    main()
