"""Score a trained maps model with the user-facing commands: ``sesim translate`` on the held-out
aerial photos (files 1001-1096, resized to 256x256 as in the GcGAN protocol), then ``sesim eval``
against the true maps (paired metrics and the offline EfficientNet-Lite0 Frechet distance).

    python benchmarks/maps_eval.py RUN_DIR --data ../shared/data/maps --out benchmarks/results/maps_eval
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from maps_split import HELD_OUT, held_out_image
from sesim.cli import main as sesim


def held_out_folders(maps: Path, scratch: Path) -> tuple[Path, Path]:
    aerial, truth = scratch / "aerial", scratch / "map"
    for folder, domain in ((aerial, "trainA"), (truth, "trainB")):
        folder.mkdir(parents=True, exist_ok=True)
        for i in HELD_OUT:
            held_out_image(maps, domain, i).save(folder / f"{i}.png")
    return aerial, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", default="../shared/data/maps")
    parser.add_argument("--out", default="benchmarks/results/maps_eval")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sesim-maps-eval-"))
    aerial, truth = held_out_folders(Path(args.data), scratch)
    translated = scratch / "translated"
    assert sesim(["translate", args.run_dir, str(aerial), str(translated), "--device", "cpu"]) == 0
    assert sesim(["eval", "--real", str(truth), "--fake", str(translated), "--paired-with", str(truth),
                  "--out", args.out, "--device", "cpu", "--overwrite"]) == 0  # fmt: skip
    result = json.loads(Path(args.out).with_suffix(".json").read_text())
    result["run_dir"] = str(args.run_dir)
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
