"""Peak memory and images/s of one training step per method, resolution and batch, with and
without activation checkpointing: the table people ask for before they train ("will it fit",
"how long"). Each cell is ``sesim train PRESET --probe`` in a fresh process (a process's peak
resident memory only grows), so the figures are what a run of that configuration reaches.

    python benchmarks/memory.py --out benchmarks/results/memory_cpu.json
    python benchmarks/memory.py --sizes 256 --methods fsesim --batches 1 2   # a quick subset

The paper's networks (ngf 64, 9 blocks, PatchGAN ndf 64) and VGG16 taps; the VGG16 weights are
random where ImageNet's cannot be had (same memory and time). A cell that runs out of memory is
recorded as such (on the CPU under a cap of the memory there is, so nothing is killed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_name, emit

METHODS = {
    "fsesim": [],
    "lsesim": [],
    "cut": [],
    "cyclegan": [],
}
COMMON = ["loss.backbone=vgg16", "loss.backbone_weights=random", "data.workers=0", "log.progress=false"]

CELL = """
import json, sys
from sesim.config import load_config
from sesim.errors import OutOfMemory
from sesim.training.probe import probe
config = load_config(sys.argv[1], sys.argv[4:])
try:
    result = probe(config, warmup=int(sys.argv[2]), measured=int(sys.argv[3]), search=False)
except OutOfMemory as error:
    result = {"out_of_memory": str(error)}
print("RESULT", json.dumps(result))
"""


def cell(method: str, size: int, batch: int, checkpointing: bool, data: Path, device: str, warmup: int,
         measured: int) -> dict:  # fmt: skip
    sets = [*COMMON, *METHODS[method], f"data.root={data}", f"data.crop_size={size}", f"data.load_size={size}",
            f"train.batch_size={batch}", f"train.activation_checkpointing={str(checkpointing).lower()}",
            f"train.device={device}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CELL, method, str(warmup), str(measured), *sets],
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    row = {"method": method, "size": size, "batch": batch, "activation_checkpointing": checkpointing}
    if done.returncode != 0 or "RESULT" not in done.stdout:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        if "out of memory" in done.stderr.lower() or "can't allocate" in done.stderr:
            return {**row, "out_of_memory": last}
        if done.returncode < 0:  # a signal: the kernel's OOM killer, when other processes took the memory
            return {**row, "killed": f"signal {-done.returncode}"}
        raise RuntimeError(f"{method} {size} {batch}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    if "out_of_memory" in result:
        return {**row, **result}
    peak = result["peak_memory"]
    return {
        **row, "peak_gib": round((peak.get("allocated") or peak.get("resident")) / 2**30, 3),
        "reserved_gib": round(peak["reserved"] / 2**30, 3) if "reserved" in peak else None,
        "images_per_s": round(result["images_per_s"], 3), "step_s": round(result["step_s_median"], 3),
        "device_name": result["device"], "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--measured", type=int, default=2)
    parser.add_argument("--largest-batch-at", type=int, default=512,
                        help="the larger batches only up to this size (the CPU's time)")  # fmt: skip
    parser.add_argument("--out", help="JSON file, rewritten after every cell; cells already in it are kept")
    parser.add_argument("--again", nargs="*", default=[], metavar="METHOD:SIZE:BATCH",
                        help="measure these cells again even when the file has them")  # fmt: skip
    args = parser.parse_args()
    import torch

    from sesim.data.synthetic import write_domains

    facts = {"torch": torch.__version__, "device": args.device, "threads": int(os.environ.get("OMP_NUM_THREADS", 0))
             or torch.get_num_threads(), "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    result = {"machine": facts, "warmup": args.warmup, "measured": args.measured, "rows": []}
    if args.out and Path(args.out).is_file():
        result["rows"] = json.loads(Path(args.out).read_text())["rows"]
    again = {tuple(int(v) if v.isdigit() else v for v in cell.split(":")) for cell in args.again}
    with tempfile.TemporaryDirectory() as folder:
        data = write_domains(Path(folder) / "data", train=2, test=1, size=64, seed=0)
        for method in args.methods:
            for size in args.sizes:
                for batch in args.batches:
                    if batch > 1 and size > args.largest_batch_at:
                        continue
                    for checkpointing in (False, True):
                        key = (method, size, batch, checkpointing)
                        old = [r for r in result["rows"] if (r["method"], r["size"], r["batch"],
                                                             r["activation_checkpointing"]) == key]  # fmt: skip
                        if old and (method, size, batch) not in again and "killed" not in old[0]:
                            continue
                        row = cell(method, size, batch, checkpointing, data, args.device, args.warmup, args.measured)
                        print(json.dumps(row), file=sys.stderr, flush=True)
                        result["rows"] = [r for r in result["rows"] if r not in old] + [row]
                        if args.out:
                            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    order = {m: i for i, m in enumerate(METHODS)}
    result["rows"].sort(key=lambda r: (order[r["method"]], r["size"], r["batch"], r["activation_checkpointing"]))
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
