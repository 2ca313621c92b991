#!/bin/bash
# Training step (CPU, FSeSim and LSeSim, batch 1, 256 px) at a git revision and in the working
# tree, interleaved round by round so that both see the same machine state; then the loss alone
# against that revision. Prints one JSON object (medians per round and side).
#   bash benchmarks/train_step_vs_revision.sh b43633f [ROUNDS]
set -euo pipefail
revision=${1:?give a git revision}; rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); trap 'git -C "$root" worktree remove --force "$work/before" >/dev/null 2>&1; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/before" "$revision" >/dev/null 2>&1
step() { (cd "$1" && PYTHONPATH="$1/src" python benchmarks/train_step.py --device cpu --batch 1 --variants fp32 \
  --repeats 4 --warmup 1); }
for round in $(seq "$rounds"); do
  step "$work/before" > "$work/before_$round.json"
  step "$root" > "$work/after_$round.json"
done
(cd "$root" && python benchmarks/loss.py --device cpu --batches 1 --compare-revision "$revision") > "$work/loss.json"
python - "$work" "$revision" "$rounds" <<'PY'
import json, statistics, sys
from pathlib import Path
work, revision, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
steps = {}
for side in ("before", "after"):
    for r in range(1, rounds + 1):
        document = json.loads((work / f"{side}_{r}.json").read_text())
        for row in document["results"]:
            steps.setdefault(row["method"], {}).setdefault(side, []).append(row["median_ms"])
summary = {
    method: {
        **{f"{side}_ms": values for side, values in sides.items()},
        **{f"{side}_median_ms": statistics.median(values) for side, values in sides.items()},
        **{f"{side}_spread_ms": round(max(values) - min(values), 1) for side, values in sides.items()},
    }
    for method, sides in steps.items()
}
print(json.dumps({"benchmark": "train_step_vs_revision", "revision": revision, "machine": document.get("cpu_model"),
                  "torch": document.get("torch"), "threads": document.get("threads"), "date": document.get("date"),
                  "train_step": summary, "loss": json.loads((work / "loss.json").read_text())}, indent=1))
PY
