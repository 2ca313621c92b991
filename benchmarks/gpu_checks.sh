#!/usr/bin/env bash
# One prepared call for a lent GPU machine (the device tool), at most 9 minutes, every stage
# time-boxed:
#   (a) device facts and the GPU tests (tests/test_device.py on cuda)  ~2.5 min
#   (b) loss, training-step and translation benchmarks              ~2.5 min
#   (c) maps at GPU scale: FSeSim and CUT, the paper's networks at 256 px, the offline backbone,
#       a wall-clock budget each (train.max_minutes), then translate + sesim eval --paired-with
#       on the held-out tiles 1001-1096                             ~2 x 2 min
# Everything lands in $OUT as three files (results.json, logs.txt, summary.md); a stage that
# fails or runs out of time makes the script exit 1 and say which.
#
#   python benchmarks/gpu_data.py              # once, here: maps subset into .gpu-data/maps (ignored)
#   run: bash benchmarks/gpu_checks.sh         # carry: [".gpu-data"]
#   bash benchmarks/gpu_checks.sh --smoke      # every stage at toy sizes on the CPU (CI runs this)
#   SESIM_CHECK_STAGES="loss maps_cut" bash benchmarks/gpu_checks.sh   # rerun only these stages
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-/tmp/sesim-gpu}
PY=${PYTHON:-python3}
DEVICE=${SESIM_CHECK_DEVICE:-$([ "$SMOKE" = 1 ] && echo cpu || echo cuda)}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/json"
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
FAILED=()

# stage NAME SECONDS JSON(yes|no) COMMAND...: stdout to $WORK/NAME.out, stderr to $WORK/NAME.err
stage() {
  local name=$1 limit=$2 json=$3 wanted
  shift 3
  if [ -n "${SESIM_CHECK_STAGES:-}" ]; then  # a rerun of some stages: each word selects the names it begins
    for wanted in $SESIM_CHECK_STAGES; do [[ $name == "$wanted"* ]] && break; wanted=; done
    [ -z "$wanted" ] && return 0
  fi
  local start=$SECONDS
  echo "== $name (at most ${limit} s): $*"
  timeout -k 10 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    FAILED+=("$name: ran out of its ${limit} s")
  elif [ "$rc" != 0 ]; then
    FAILED+=("$name: exit code $rc")
  elif [ "$json" = yes ] && ! "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d' "$WORK/$name.out" 2>/dev/null; then
    FAILED+=("$name: printed no valid, non-empty JSON")
    rc=1
  fi
  [ "$json" = yes ] && [ "$rc" = 0 ] && cp "$WORK/$name.out" "$WORK/json/$name.json"
  [ "$rc" != 0 ] && tail -n 5 "$WORK/$name.err" | sed "s/^/   $name: /"
  echo "   $name: exit $rc after $((SECONDS - start)) s"
  return 0
}

# --- (a) device facts and tests ---
stage facts 60 yes "$PY" -c '
import json, sys, torch
device = sys.argv[1]
facts = {"torch": torch.__version__, "device": device, "cuda": torch.cuda.is_available()}
if device.startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device here"
    facts |= {"name": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
              "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
              "bf16": torch.cuda.is_bf16_supported()}
print(json.dumps(facts))' "$DEVICE"
if [ "$SMOKE" = 1 ]; then
  stage tests 60 no "$PY" -m pytest -q -x -p no:cacheprovider tests/test_losses_module.py
else
  stage tests 150 no env SESIM_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py \
    tests/test_losses_spatial.py
fi

# --- (b) benchmarks ---
if [ "$SMOKE" = 1 ]; then
  stage loss 60 yes "$PY" benchmarks/loss.py --device "$DEVICE" --repeats 1 --batches 1 --skip-baseline
  stage train_step 60 yes "$PY" benchmarks/train_step.py --device "$DEVICE" --size 32 --batch 1 --repeats 1 \
    --warmup 0 --variants fp32
  stage translate 60 yes "$PY" benchmarks/translate.py --device "$DEVICE" --size 32 --batch 1 --repeats 1 --no-compile
else
  stage loss 40 yes "$PY" benchmarks/loss.py --device "$DEVICE" --repeats 20 --batches 1 8 --skip-baseline
  stage train_step 80 yes "$PY" benchmarks/train_step.py --device "$DEVICE" --batch 1 8 --repeats 10 --warmup 3 \
    --variants baseline fp32 bf16 bf16+compile
  stage translate 30 yes "$PY" benchmarks/translate.py --device "$DEVICE" --batch 1 8 --repeats 10 --no-compile
fi

# --- (c) maps through the user's commands ---
if [ "$SMOKE" = 1 ]; then
  DATA="$WORK/maps"
  "$PY" -c 'import sys; from sesim.data.synthetic import write_domains; write_domains(sys.argv[1], train=4, test=2, size=40, seed=0)' "$DATA"
  BATCH=2
  RECIPE=(--set data.load_size=36 --set data.crop_size=32 --set model.generator.ngf=8 --set model.generator.blocks=1
    --set model.discriminator.ndf=8 --set train.max_steps=2 --set loss.num_queries=16
    --set loss.patchnce.taps=[input,down1] --set loss.patchnce.num_patches=16)
else
  DATA=.gpu-data/maps
  # The fastest FSeSim batch that (b) measured (bf16), else 8.
  BATCH=$("$PY" -c '
import json, sys
try:
    rows = [r for r in json.load(open(sys.argv[1]))["results"] if r["method"] == "fsesim" and r["variant"] == "bf16"]
    print(max(rows, key=lambda r: r["images_per_s"])["batch"])
except Exception:
    print(8)' "$WORK/json/train_step.json")
  RECIPE=(--set train.max_minutes=1.5 --set train.max_steps=1000000 --set data.workers=8 --set train.precision=bf16)
fi
COMMON=(--set loss.backbone=efficientnet_lite0 --set train.batch_size="$BATCH" --set "train.device=$DEVICE"
  --set log.progress=false --set log.tensorboard=false --set log.every=20 --set log.sample_every=100000
  --set log.checkpoint_every=100000)
for method in fsesim cut; do
  stage "maps_${method}_train" 120 no "$PY" -m sesim.cli train "$method" --data "$DATA" "${COMMON[@]}" "${RECIPE[@]}" \
    --set "log.out_dir=$WORK/runs/$method"
  RUN=$(ls -d "$WORK/runs/$method"/*/ 2>/dev/null | head -n 1)
  stage "maps_${method}_translate" 40 no "$PY" -m sesim.cli translate "${RUN:-missing-run}" "$DATA/testA" \
    "$WORK/out/$method" --device "$DEVICE" --tile 0
  stage "maps_${method}" 60 yes sh -c '"$1" -m sesim.cli eval --real "$2/testB" --fake "$3" --paired-with "$2/testB" \
    --metrics paired,fd_efficientnet --device "$4" --out "$5" >/dev/null && cat "$5.json"' sh "$PY" "$DATA" \
    "$WORK/out/$method" "$DEVICE" "$WORK/eval_$method"
  [ -n "$RUN" ] && [ -f "$RUN/log.jsonl" ] && cp "$RUN/log.jsonl" "$WORK/maps_${method}.log.jsonl"
done

# --- bundle: results.json, logs.txt, summary.md ---
"$PY" - "$WORK" "$OUT" "$SMOKE" "${FAILED[@]+"${FAILED[@]}"}" <<'EOF'
import json, sys
from pathlib import Path
work, out, smoke, failed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
results = {"smoke": smoke, "failed": failed}
results |= {p.stem: json.loads(p.read_text()) for p in sorted((work / "json").glob("*.json"))}
for log in sorted(work.glob("maps_*.log.jsonl")):
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [line for line in lines if "loss/g" in line]
    results[log.name.split(".")[0] + "_curve"] = steps
(out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
with (out / "logs.txt").open("w") as logs:
    for path in sorted(work.glob("*.err")):
        text = path.read_text()
        logs.write(f"===== {path.stem} =====\n{text[-4000:]}\n")
lines = ["| stage | figure |", "|---|---|"]
facts = results.get("facts", {})
lines.append(f"| device | {facts.get('name', facts.get('device', '?'))} |")
for row in results.get("train_step", {}).get("results", []):
    lines.append(f"| train step {row['method']} {row['variant']} batch {row['batch']} | {row['median_ms']} ms, "
                 f"{row['images_per_s']} img/s, {row['peak_memory_mb']:.0f} MB |")
for row in results.get("loss", {}).get("rows", []):
    if "sesim_ms" in row:
        lines.append(f"| loss batch {row['batch']} window {row['window'] or 'global'} | {row['sesim_ms']:.2f} ms |")
for row in results.get("translate", {}).get("results", []):
    lines.append(f"| translate {row['setting']} batch {row['batch']} | {row['median_ms']} ms |")
for method in ("fsesim", "cut"):
    scores = results.get(f"maps_{method}", {})
    paired = scores.get("paired", {})
    curve = results.get(f"maps_{method}_curve", [])
    if paired:
        lines.append(f"| maps {method} ({curve[-1]['step'] if curve else '?'} steps) | RMSE {paired['rmse']:.2f}, "
                     f"acc<5 {100 * paired['accuracy_5']:.1f}%, acc<10 {100 * paired['accuracy_10']:.1f}%, "
                     f"PSNR {paired['psnr']:.2f}, SSIM {paired['ssim']:.3f}, FD {scores.get('fd_efficientnet', 0):.1f} |")
lines += [f"| FAILED | {item} |" for item in failed]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
rm -rf "$WORK"
if [ "${#FAILED[@]}" -gt 0 ]; then
  printf 'gpu_checks: FAILED stage: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "gpu_checks: every stage passed; results in $OUT (results.json, logs.txt, summary.md)"
