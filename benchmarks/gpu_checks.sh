#!/usr/bin/env bash
# One prepared script for a lent GPU machine (device tool): GPU tests of the loss and training
# switches, then every benchmark, JSON under $OUT named as benchmarks/results/ expects.
# Python packages the machine lacks travel as wheels in .whl/ (see the device README).
set -uo pipefail
OUT=${OUT:-/tmp/sesim-gpu}
mkdir -p "$OUT"
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pytest -q -x tests/test_losses_spatial.py tests/test_losses_module.py 2>&1 | tail -3 > "$OUT/tests.txt"
python3 benchmarks/loss.py --device cuda --repeats 50 > "$OUT/loss_gpu.json" 2> "$OUT/loss.err"
python3 benchmarks/train_step.py --device cuda --batch 1 8 --repeats 20 > "$OUT/train_step_gpu.json" 2> "$OUT/train_step.err"
python3 benchmarks/translate.py --device cuda --batch 1 8 > "$OUT/translate_gpu.json" 2> "$OUT/translate.err"
python3 benchmarks/precision.py --device cuda --steps 400 > "$OUT/precision_gpu.json" 2> "$OUT/precision.err"
cat "$OUT"/gpu.txt "$OUT"/tests.txt
