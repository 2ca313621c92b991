"""Split the GPU call's bundle (``$OUT/results.json`` of ``gpu_checks.sh``) into the files
``benchmarks/tables.py`` renders: ``loss_gpu.json``, ``train_step_gpu.json``,
``translate_gpu.json``, ``memory_gpu.json``, ``loop_gpu.json`` (``sesim train`` beside the benchmark) and
``maps_gpu.json``
(with the card's name), then run tables.py.

    python benchmarks/gpu_results.py /path/to/files_at/results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def split(bundle: dict) -> dict[str, dict]:
    """The per-table documents of one bundle; a smoke bundle (CPU, toy sizes) is refused."""
    if bundle.get("smoke"):
        raise ValueError("a --smoke bundle holds toy figures from a CPU; only a real GPU call's bundle is recorded")
    card = bundle.get("facts", {}).get("name")
    documents = {}
    for name in ("loss", "train_step", "translate", "memory"):
        if name not in bundle:
            continue
        document = dict(bundle[name])
        facts = document["machine"] if isinstance(document.get("machine"), dict) else document
        if card:
            facts["device_name"] = card  # tables.py names the card from it
        documents[f"{name}_gpu"] = document
    if bundle.get("loops"):
        steps = bundle.get("train_step", {})
        defaults = [r for r in steps.get("results", []) if r.get("variant") == "defaults"]
        documents["loop_gpu"] = {
            "device_name": card, "torch": steps.get("torch"), "date": steps.get("date"),
            "loops": list(bundle["loops"].values()), "defaults": defaults,
        }  # fmt: skip
    methods = {}
    for method in ("fsesim", "cut"):
        if f"maps_{method}" in bundle:
            curve = bundle.get(f"maps_{method}_curve") or [{}]
            methods[method] = {**bundle[f"maps_{method}"], "steps": curve[-1].get("step")}
    if methods:
        documents["maps_gpu"] = {"device_name": card, "methods": methods}
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="results.json written by benchmarks/gpu_checks.sh")
    args = parser.parse_args()
    try:
        documents = split(json.loads(Path(args.bundle).read_text()))
    except (OSError, ValueError) as error:
        parser.error(f"{args.bundle}: {error}")
    for name, document in documents.items():
        (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote benchmarks/results/{name}.json")
    subprocess.run([sys.executable, str(Path(__file__).parent / "tables.py")], check=True)


if __name__ == "__main__":
    main()
