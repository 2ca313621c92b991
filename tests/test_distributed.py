"""Multi-process training through torchrun (2 CPU processes, gloo): gradients are synchronised,
so 2 processes on half batches train the same networks as 1 process on the whole batch, and a
run resumes with another number of processes."""

import json
import os
import subprocess
import sys

import pytest
import torch

from sesim.training.checkpoint import load_checkpoint
from sesim.training.loop import load_generator
from tests.helpers import TINY, tiny_data

# LSeSim without colour jitter (per-process randomness) and without the image pool: every
# network (G, D, heads) then has a gradient that is a plain mean over the batch.
SETTINGS = [*TINY, "train.pool_size=0", "loss.augment=false", "train.batch_size=4", "log.checkpoint_every=2"]


def run(tmp_path, name, processes, *extra, resume=None, preset="lsesim"):
    command = [sys.executable, "-m", "sesim.cli", "--debug", "train"]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launcher, "-m", "sesim.cli", "--debug", "train"]
    if resume is not None:
        command += ["--resume", str(resume)]
    else:
        overrides = [*SETTINGS, f"data.root={tmp_path / 'data'}", f"log.out_dir={tmp_path / name}", *extra]
        command += [preset, *[arg for item in overrides for arg in ("--set", item)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if resume is not None:
        return resume
    (run_dir,) = (tmp_path / name).iterdir()
    return run_dir


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if '"loss/g"' in line]


def outputs(run_dir, images):
    generator, _ = load_generator(run_dir / "checkpoints" / "latest.pt")
    document = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    with torch.no_grad():
        return generator(images), document


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    tiny_data(root / "data")
    return root


def test_two_processes_match_one_process_on_the_whole_batch(runs):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    single = run(runs, "single", 1, "train.max_steps=3")
    double = run(runs, "double", 2, "train.max_steps=3")
    half = run(runs, "half", 1, "train.max_steps=3", "train.batch_size=2")  # what rank 0 alone would see

    single_losses, double_losses = losses(single), losses(double)
    assert [r["step"] for r in double_losses] == [1, 2, 3]
    for a, b in zip(single_losses, double_losses, strict=True):
        for key in ("loss/heads", "loss/d", "loss/g_gan", "loss/spatial"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)

    single_out, single_doc = outputs(single, images)
    double_out, double_doc = outputs(double, images)
    half_out, _ = outputs(half, images)
    # Float sums in another order (and Adam's first steps, which amplify near-zero gradients)
    # leave a small gap; training on half the batch, as an unsynchronised rank would, a large one.
    tolerance = 2e-3
    assert (double_out - single_out).abs().max().item() < tolerance
    assert (half_out - single_out).abs().max().item() > 10 * tolerance
    assert len(double_doc["processes"]) == 2 and len(single_doc["processes"]) == 1
    assert not (runs / "double" / "rank1").exists()  # only rank 0 writes


def test_resume_with_another_number_of_processes(runs):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    straight = run(runs, "straight", 1, "train.max_steps=4")
    stopped = run(runs, "stopped", 2, "train.max_steps=4")
    checkpoints = stopped / "checkpoints"
    (checkpoints / "latest.pt").write_bytes((checkpoints / "step_0000002.pt").read_bytes())
    run(runs, "stopped", 1, resume=stopped)

    events = [json.loads(line) for line in (stopped / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" and "2" in e["note"] for e in events)
    straight_out, straight_doc = outputs(straight, images)
    resumed_out, resumed_doc = outputs(stopped, images)
    assert resumed_doc["step"] == straight_doc["step"] == 4
    # Four steps of Adam over differently ordered sums: a small gap, well below the ~0.15 that
    # half a batch makes (first test).
    assert (resumed_out - straight_out).abs().max().item() < 1e-2


@pytest.mark.parametrize("preset", ["cut", "cyclegan"])
def test_other_methods_synchronise_every_trained_network(runs, preset):
    """CUT's projector and CycleGAN's two generators / two discriminators go through DDP too."""
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    extra = ["train.max_steps=2", "loss.patchnce.taps=[input,down1,block1]"]
    single = run(runs, f"{preset}-single", 1, *extra, preset=preset)
    double = run(runs, f"{preset}-double", 2, *extra, preset=preset)
    for a, b in zip(losses(single), losses(double), strict=True):
        assert b["loss/g"] == pytest.approx(a["loss/g"], rel=1e-4) and b["loss/d"] == pytest.approx(
            a["loss/d"], rel=1e-4
        )
    single_doc, double_doc = (
        load_checkpoint(single / "checkpoints" / "latest.pt"),
        load_checkpoint(double / "checkpoints" / "latest.pt"),
    )
    assert set(single_doc["networks"]) == set(double_doc["networks"])
    assert (outputs(double, images)[0] - outputs(single, images)[0]).abs().max().item() < 2e-3
