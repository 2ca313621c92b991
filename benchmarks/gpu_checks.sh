#!/usr/bin/env bash
# One prepared call for a lent GPU machine (the device tool): at most 8 minutes, every stage
# time-boxed, partial results kept when a stage runs out. Stages, the seconds each took on an
# H200 on 2026-12-04, and their budgets (about 1.5x that):
#   install      1 /  15  the wheels in .whl/ (bash benchmarks/gpu_wheels.sh, here) into /tmp/site
#   facts        6 /  15  card, capability, memory, torch
#   train_step  65 / 100  benchmarks/train_step.py: FSeSim and LSeSim at batch 1 and 8, every speed
#                         variant (the rows so far survive a time-out)
#   translate    7 /  20  benchmarks/translate.py at batch 1 and 8
#   loop_*      40 /  50  each: `sesim train` (FSeSim b1, FSeSim b8, LSeSim b1) on synthetic 256 px
#                         domains with its defaults for 30 s, its logged images/s beside the
#                         benchmark's defaults row
#   tests       96 / 150  SESIM_TEST_DEVICE=cuda pytest tests/test_device.py (the graph step among them)
#   memory       - / 420  only when SESIM_CHECK_STAGES names it (not yet run on a GPU): benchmarks/memory.py,
#                         the README's memory table (4 methods, 256/512/1024 px, batch 1 and 8, with and
#                         without activation checkpointing), each cell a fresh `--probe` process
# In all at most 450 s, about 300 s as measured, plus the machine's start (~30 s).
# Everything lands in $OUT as three files (results.json, logs.txt, summary.md); a stage that fails
# or runs out of time makes the script exit 1 and say which.
#
#   bash benchmarks/gpu_wheels.sh               # once, here: the packages the GPU machine lacks
#   run: bash benchmarks/gpu_checks.sh          # carry: [".whl"]
#   bash benchmarks/gpu_checks.sh --smoke       # every stage at toy sizes on the CPU (CI runs this)
#   SESIM_CHECK_STAGES="train_step loop" bash benchmarks/gpu_checks.sh   # rerun only these stages
#   SESIM_CHECK_VARIANTS="defaults bf16+graph" ...                        # only these train_step variants
#   SESIM_CHECK_METHODS=fsesim SESIM_CHECK_BATCHES=8 SESIM_CHECK_STEP_SECONDS=300 ...  # and only these rows, longer
#   (the next lent GPU, for issue 27's batch-8 bar: torch.compile under the step graph against the defaults:
#    SESIM_CHECK_STAGES=train_step SESIM_CHECK_METHODS=fsesim SESIM_CHECK_BATCHES=8 SESIM_CHECK_STEP_SECONDS=300
#    SESIM_CHECK_VARIANTS="defaults bf16+compile+graph" bash benchmarks/gpu_checks.sh)
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

# stage NAME SECONDS JSON(yes|no) COMMAND...: stdout to $WORK/NAME.out, stderr to $WORK/NAME.err.
# A JSON stage may also write $WORK/NAME.partial as it goes: kept (marked partial) when it fails.
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
  if [ "$json" = yes ] && [ "$rc" = 0 ]; then
    cp "$WORK/$name.out" "$WORK/json/$name.json"
  elif [ "$json" = yes ] && [ -s "$WORK/$name.partial" ]; then
    "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["partial"] = True; print(json.dumps(d))' \
      "$WORK/$name.partial" >"$WORK/json/$name.json" 2>/dev/null && echo "   $name: kept its partial results"
  fi
  [ "$rc" != 0 ] && tail -n 5 "$WORK/$name.err" | sed "s/^/   $name: /"
  echo "   $name: exit $rc after $((SECONDS - start)) s"
  echo "$name $((SECONDS - start)) $rc" >>"$WORK/durations.txt"
  return 0
}

# --- the packages this machine lacks, carried as wheels ---
if [ "$SMOKE" = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
  stage install 15 no "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

# --- device facts ---
stage facts 15 yes "$PY" -c '
import json, sys, torch
device = sys.argv[1]
facts = {"torch": torch.__version__, "device": device, "cuda": torch.cuda.is_available()}
if device.startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device here"
    facts |= {"name": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
              "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
              "bf16": torch.cuda.is_bf16_supported()}
print(json.dumps(facts))' "$DEVICE"
# --- benchmarks ---
if [ "$SMOKE" = 1 ]; then
  STEP=(--size 32 --batch 1 --repeats 1 --warmup 0 --variants baseline defaults fp32)
  stage translate 60 yes "$PY" benchmarks/translate.py --device "$DEVICE" --size 32 --batch 1 --repeats 1 --no-compile
else
  read -r -a VARIANTS <<<"${SESIM_CHECK_VARIANTS:-baseline defaults fp32 fp32+nhwc fp32+graph fp32+nhwc+graph bf16 \
bf16+graph bf16+nhwc+graph}"
  read -r -a METHODS <<<"${SESIM_CHECK_METHODS:-fsesim lsesim}"
  read -r -a BATCHES <<<"${SESIM_CHECK_BATCHES:-1 8}"
  STEP=(--methods "${METHODS[@]}" --batch "${BATCHES[@]}" --repeats 10 --warmup 2 --variants "${VARIANTS[@]}")
fi
stage train_step "${SESIM_CHECK_STEP_SECONDS:-100}" yes "$PY" benchmarks/train_step.py --device "$DEVICE" "${STEP[@]}" \
  --out "$WORK/train_step.partial"
[ "$SMOKE" = 0 ] && stage translate 20 yes "$PY" benchmarks/translate.py --device "$DEVICE" --batch 1 8 --repeats 10 \
  --no-compile

# --- the training loop delivers the step: `sesim train` with its defaults, beside the benchmark's defaults row ---
DATA="$WORK/domains"
SIZE=$([ "$SMOKE" = 1 ] && echo 40 || echo 286)
"$PY" -c 'import sys; from sesim.data.synthetic import write_domains; write_domains(sys.argv[1], train=int(sys.argv[2]), test=2, size=int(sys.argv[3]), seed=0)' \
  "$DATA" "$([ "$SMOKE" = 1 ] && echo 6 || echo 200)" "$SIZE"
if [ "$SMOKE" = 1 ]; then
  LOOP=(--set data.load_size=36 --set data.crop_size=32 --set model.generator.ngf=8 --set model.generator.blocks=1
    --set model.discriminator.ndf=8 --set train.max_steps=4 --set loss.num_queries=16 --set log.every=2)
  MINUTES=1
else
  LOOP=(--set train.max_steps=1000000 --set data.workers=6 --set log.every=25)
  MINUTES=0.5
fi
for run in fsesim:1 fsesim:8 lsesim:1; do
  method=${run%%:*} batch=${run##*:}
  [ "$SMOKE" = 1 ] && [ "$batch" != 1 ] && continue
  stage "loop_${method}_b${batch}" 50 no "$PY" -m sesim.cli train "$method" --data "$DATA" "${LOOP[@]}" \
    --set loss.backbone_weights=random --set "train.batch_size=$batch" --set "train.device=$DEVICE" \
    --set "train.max_minutes=$MINUTES" --set log.progress=false --set log.tensorboard=false \
    --set log.sample_every=100000 --set log.checkpoint_every=100000 --set "log.out_dir=$WORK/runs/${method}_b${batch}"
  RUN=$(ls -d "$WORK/runs/${method}_b${batch}"/*/ 2>/dev/null | head -n 1)
  [ -n "$RUN" ] && [ -f "$RUN/log.jsonl" ] && cp "$RUN/log.jsonl" "$WORK/loop_${method}_b${batch}.log.jsonl"
done

# --- the memory table (opt-in on a GPU: a call of its own, SESIM_CHECK_STAGES=memory) ---
if [ "$SMOKE" = 1 ]; then
  stage memory 120 yes "$PY" benchmarks/memory.py --device "$DEVICE" --methods fsesim --sizes 32 --batches 1 \
    --warmup 0 --measured 1 --out "$WORK/memory.partial"
elif [[ " ${SESIM_CHECK_STAGES:-} " == *" memory"* ]]; then
  stage memory 420 yes "$PY" benchmarks/memory.py --device "$DEVICE" --batches 1 8 --largest-batch-at 512 \
    --warmup 3 --measured 5 --out "$WORK/memory.partial"
fi

# --- the tests that need the device (last: the figures above come first if it runs long) ---
if [ "$SMOKE" = 1 ]; then
  stage tests 60 no "$PY" -m pytest -q -x -p no:cacheprovider tests/test_losses_module.py
else
  stage tests 150 no env SESIM_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider -rfE tests/test_device.py
fi

# --- bundle: results.json, logs.txt, summary.md ---
"$PY" - "$WORK" "$OUT" "$SMOKE" "${FAILED[@]+"${FAILED[@]}"}" <<'EOF'
import json, statistics, sys
from pathlib import Path
work, out, smoke, failed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
results = {"smoke": smoke, "failed": failed}
results |= {p.stem: json.loads(p.read_text()) for p in sorted((work / "json").glob("*.json"))}
durations = work / "durations.txt"
results["stage_seconds"] = {n: int(s) for n, s, _ in (l.split() for l in durations.read_text().splitlines())} if durations.is_file() else {}
steps = {(r["method"], r["batch"], r["variant"]): r for r in results.get("train_step", {}).get("results", []) if "median_ms" in r}
loops = {}
for log in sorted(work.glob("loop_*.log.jsonl")):
    name = log.name.split(".")[0]
    method, batch = name[len("loop_"):].rsplit("_b", 1)
    variant = "defaults"  # the loop runs what a user gets with nothing set
    rates = [r["images_per_s"] for r in map(json.loads, log.read_text().splitlines()) if "images_per_s" in r]
    steady = rates[2:] or rates  # the first lines hold the warm-up and the capture
    bench = steps.get((method, int(batch), variant), {}).get("images_per_s")
    loops[name] = {"method": method, "batch": int(batch), "variant": variant, "log_images_per_s": rates,
                   "loop_images_per_s": statistics.median(steady) if steady else None, "benchmark_images_per_s": bench}
results["loops"] = loops
(out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
with (out / "logs.txt").open("w") as logs:
    for path in sorted(work.glob("*.err")) + sorted(work.glob("tests.out")):
        logs.write(f"===== {path.name} =====\n{path.read_text()[-6000:]}\n")
lines = ["| stage | figure |", "|---|---|"]
facts = results.get("facts", {})
lines.append(f"| device | {facts.get('name', facts.get('device', '?'))}, torch {facts.get('torch', '?')} |")
for row in results.get("train_step", {}).get("results", []):
    figure = (f"{row['median_ms']} ms, {row['images_per_s']} img/s, {row['peak_memory_mb']:.0f} MB"
              if "median_ms" in row else row.get("error", "?"))
    lines.append(f"| train step {row['method']} b{row['batch']} {row['variant']} | {figure} |")
for row in results.get("translate", {}).get("results", []):
    lines.append(f"| translate {row['setting']} batch {row['batch']} | {row['median_ms']} ms |")
for row in results.get("memory", {}).get("rows", []):
    figure = row.get("out_of_memory") or row.get("killed") or f"{row['peak_gib']} GiB, {row['images_per_s']} img/s"
    lines.append(f"| memory {row['method']} {row['size']} b{row['batch']} ckpt {row['activation_checkpointing']} | {figure} |")
for name, loop in loops.items():
    lines.append(f"| {name} ({loop['variant']}) | loop {loop['loop_images_per_s']} img/s vs benchmark "
                 f"{loop['benchmark_images_per_s']} img/s |")
lines += [f"| seconds | {name} {seconds} |" for name, seconds in results["stage_seconds"].items()]
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
