"""benchmarks/gpu_checks.sh cannot report success when a stage failed (it used to exit 0 with
every stage dead and every JSON empty). CI runs its --smoke mode for real (.ci/run)."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_checks.sh"


def test_a_failing_stage_fails_the_call_and_is_named(tmp_path):
    environment = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": "false"}  # every stage's python fails
    result = subprocess.run(["bash", str(SCRIPT), "--smoke"], capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    for stage in ("facts", "tests", "train_step", "translate", "loop_fsesim_b1", "loop_lsesim_b1"):
        assert f"FAILED stage: {stage}" in result.stderr, stage


def test_a_stage_that_prints_no_json_fails(tmp_path):
    """A benchmark that exits 0 with empty output (what the old script shipped) is a failure."""
    real = subprocess.run(["bash", "-c", "command -v python3"], capture_output=True, text=True).stdout.strip()
    fake = tmp_path / "python3"
    fake.write_text(f'#!/bin/sh\ncase "$1" in benchmarks/*.py) exit 0 ;; esac\nexec "{real}" "$@"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    environment = {**os.environ, "OUT": str(out), "PYTHON": str(fake), "SESIM_CHECK_STAGES": "train_step translate"}
    result = subprocess.run(["bash", str(SCRIPT), "--smoke"], capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    assert "FAILED stage: train_step: printed no valid, non-empty JSON" in result.stderr
    assert "FAILED stage: translate: printed no valid, non-empty JSON" in result.stderr
    assert "facts" not in result.stdout  # only the stages asked for ran
    assert sorted(p.name for p in out.iterdir()) == ["logs.txt", "results.json", "summary.md"]  # at most 8 files


def test_gpu_bundle_is_split_for_the_tables_and_a_smoke_bundle_is_refused():
    import importlib.util

    import pytest

    spec = importlib.util.spec_from_file_location("gpu_results", SCRIPT.parent / "gpu_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paired = {"rmse": 30.0, "accuracy_5": 0.3, "accuracy_10": 0.5, "psnr": 25.0, "ssim": 0.7}
    bundle = {
        "smoke": False, "facts": {"name": "NVIDIA H200"},
        "train_step": {"torch": "2.14", "device": "cuda", "results": []},
        "memory": {"machine": {"torch": "2.14", "device": "cuda"}, "warmup": 3, "measured": 5, "rows": []},
        "maps_fsesim": {"paired": paired, "fd_efficientnet": 100.0}, "maps_fsesim_curve": [{"step": 900}],
    }  # fmt: skip
    documents = module.split(bundle)
    assert documents["train_step_gpu"]["device_name"] == "NVIDIA H200"
    assert documents["memory_gpu"]["machine"]["device_name"] == "NVIDIA H200"  # the memory table names the card
    assert documents["maps_gpu"]["methods"]["fsesim"]["steps"] == 900
    with pytest.raises(ValueError, match="smoke"):
        module.split({**bundle, "smoke": True})


def test_the_step_rows_and_their_budget_can_be_chosen_for_one_question(tmp_path):
    """A lent GPU's call can ask one question (FSeSim at batch 8, compiled under the graph, against
    the defaults) with the budget a compile needs; the choice reaches the benchmark's arguments."""
    seen = tmp_path / "arguments.txt"
    fake = tmp_path / "python3"
    fake.write_text(
        f'#!/bin/sh\ncase "$1" in benchmarks/train_step.py) echo "$@" > "{seen}"; echo "{{\\"rows\\": 1}}"; exit 0 ;; '
        "esac\nexit 0\n"
    )
    fake.chmod(0o755)
    environment = {
        **os.environ, "OUT": str(tmp_path / "out"), "PYTHON": str(fake), "SESIM_CHECK_DEVICE": "cpu",
        "SESIM_CHECK_STAGES": "train_step", "SESIM_CHECK_METHODS": "fsesim", "SESIM_CHECK_BATCHES": "8",
        "SESIM_CHECK_STEP_SECONDS": "300", "SESIM_CHECK_VARIANTS": "defaults bf16+compile+graph",
    }  # fmt: skip
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert "== train_step (at most 300 s)" in result.stdout
    arguments = seen.read_text().split()
    assert arguments[arguments.index("--methods") + 1 : arguments.index("--batch")] == ["fsesim"]
    assert arguments[arguments.index("--batch") + 1 : arguments.index("--repeats")] == ["8"]
    assert arguments[arguments.index("--variants") + 1 : arguments.index("--out")] == ["defaults", "bf16+compile+graph"]
