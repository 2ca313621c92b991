#!/usr/bin/env bash
# One prepared script for a lent GPU machine (device tool): GPU tests of the loss and the
# benchmarks, JSON under $OUT. Installs only what the machine lacks (see the device README).
set -uo pipefail
OUT=${OUT:-/tmp/sesim-gpu}
mkdir -p "$OUT"
export PYTHONPATH=src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pytest -q tests/test_losses_spatial.py tests/test_losses_module.py 2>&1 | tail -3 > "$OUT/tests.txt"
python3 benchmarks/loss.py --device cuda --repeats 50 > "$OUT/loss.json" 2> "$OUT/loss.err"
cat "$OUT"/gpu.txt "$OUT"/tests.txt "$OUT"/loss.json
