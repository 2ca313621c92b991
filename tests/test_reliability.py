"""Crashes and bad numbers never cost the user their work: NaN guard, signals, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sesim.checkpoint import load_checkpoint
from sesim.losses.modules import SpatialCorrelativeLoss
from sesim.training.loop import Interrupted, TrainingStopped, train
from tests.helpers import TINY, tiny_config, tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


def poison_step(monkeypatch, bad_calls):
    """Make the structure loss NaN on the given (1-based) calls of the generator step."""
    original = SpatialCorrelativeLoss.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] in bad_calls else loss

    monkeypatch.setattr(SpatialCorrelativeLoss, "forward", forward)


def test_nan_loss_is_skipped_and_logged(tmp_path, data, monkeypatch):
    poison_step(monkeypatch, {2})
    run_dir = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=3"))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "non_finite_loss"]
    assert len(events) == 1 and events[0]["step"] == 2 and events[0]["loss"] == "generator"
    assert len(events[0]["files"]) == 4 and all(f.endswith(".png") for f in events[0]["files"])
    weights = load_checkpoint(run_dir)["networks"]
    assert all(torch.isfinite(v).all() for net in weights.values() for v in net.values())


@pytest.mark.numerics
def test_nan_guard_leaves_generator_untouched_on_the_bad_step(tmp_path, data, monkeypatch):
    clean = train(tiny_config("fsesim", data, tmp_path / "a", "train.max_steps=1"))
    poison_step(monkeypatch, {2})
    skipped = train(tiny_config("fsesim", data, tmp_path / "b", "train.max_steps=2"))
    before = load_checkpoint(clean)["networks"]["generator"]
    after = load_checkpoint(skipped)["networks"]["generator"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_too_many_nonfinite_steps_stop_the_run(tmp_path, data, monkeypatch):
    poison_step(monkeypatch, {3, 4})
    config = tiny_config("fsesim", data, tmp_path, "train.max_steps=6", "train.max_nonfinite_steps=1")
    with pytest.raises(TrainingStopped, match="2 steps with non-finite losses"):
        train(config)
    run_dir = next(tmp_path.glob("*-fsesim"))
    assert load_checkpoint(run_dir)["step"] == 3  # the last good checkpoint (checkpoint_every=3)


@pytest.mark.numerics
def test_sigterm_saves_and_resume_matches(tmp_path, data, monkeypatch):
    original = SpatialCorrelativeLoss.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of step 2
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpatialCorrelativeLoss, "forward", forward)
    with pytest.raises(Interrupted) as info:
        train(tiny_config("fsesim", data, tmp_path / "b", "train.max_steps=5", "log.checkpoint_every=100"))
    assert info.value.step == 2 and load_checkpoint(info.value.run_dir)["step"] == 2
    monkeypatch.setattr(SpatialCorrelativeLoss, "forward", original)
    resumed = train(None, resume=info.value.run_dir)
    straight = train(tiny_config("fsesim", data, tmp_path / "a", "train.max_steps=5", "log.checkpoint_every=100"))
    a, b = load_checkpoint(straight)["networks"]["generator"], load_checkpoint(resumed)["networks"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path, data):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "sesim.cli", "train", "fsesim", "--data", str(data)]
    command += [
        arg
        for s in [*TINY, f"log.out_dir={out}", "train.max_steps=20", "log.checkpoint_every=1"]
        for arg in ("--set", s)
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = None
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        found = list(out.glob("*/checkpoints/step_0000004.pt"))
        if found:
            latest = found[0].parent / "latest.pt"
            break
        time.sleep(0.05)
    process.kill()  # SIGKILL, wherever it is (often in the middle of a checkpoint write)
    process.wait()
    assert latest is not None, "the training process never reached step 4"
    run_dir = latest.parent.parent
    stopped_at = load_checkpoint(run_dir)["step"]
    assert 3 <= stopped_at < 20  # latest.pt may still be step 3 if the kill fell between the two writes
    resumed = train(None, resume=run_dir)
    straight = train(
        tiny_config("fsesim", data, tmp_path / "straight", "train.max_steps=20", "log.checkpoint_every=100")
    )
    a, b = load_checkpoint(straight)["networks"]["generator"], load_checkpoint(resumed)["networks"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((run_dir / "checkpoints").glob(".*"))  # a write cut by the kill is cleared


def test_a_stale_temporary_checkpoint_is_cleared_and_checkpoints_get_the_usual_mode(tmp_path):
    from sesim.checkpoint import save_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = folder / ".step_0000003.partial.pt"  # what kill -9 in the middle of a write leaves
    stale.write_bytes(b"half a checkpoint")
    older = folder / ".step_0000002.pt.abc123.tmp"  # ... and did, as earlier versions named it
    older.write_bytes(b"half a checkpoint")
    umask = os.umask(0o022)
    try:
        written = save_checkpoint(folder / "step_0000004.pt", {"step": 4})
    finally:
        os.umask(umask)
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000004.pt"]
    assert written.stat().st_mode & 0o777 == 0o644


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux) to read the RSS")
def test_memory_does_not_grow_over_a_long_run(tmp_path, data):
    import threading

    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(_rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        train(
            tiny_config(
                "fsesim", data, tmp_path, "train.max_steps=300", "log.sample_every=1000", "log.checkpoint_every=1000"
            )
        )
    finally:
        done.set()
        sampler.join()
    assert len(samples) > 30
    third = len(samples) // 3
    middle, last = sorted(samples[third : 2 * third]), sorted(samples[2 * third :])
    growth = last[len(last) // 2] - middle[len(middle) // 2]
    # A leak of one small graph or batch per step would add well over 25 MB in 100 steps.
    assert growth < 25, f"RSS grew by {growth:.1f} MB between the middle and the last third of the run"


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_whole_process_group_with_loader_workers(tmp_path, data, number):
    """Ctrl-C in a terminal and schedulers signal the whole process group, loader workers
    included: the run still saves the last finished step and exits with 130, not with a
    "DataLoader worker killed" error from the middle of a step."""
    out = tmp_path / "group"
    command = [sys.executable, "-m", "sesim.cli", "train", "fsesim", "--data", str(data)]
    overrides = [*TINY, f"log.out_dir={out}", "train.max_steps=500", "log.checkpoint_every=1", "data.workers=2"]
    command += [arg for s in overrides for arg in ("--set", s)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/checkpoints/step_0000003.pt")):
        time.sleep(0.05)
    os.killpg(process.pid, number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted at step" in stderr and "DataLoader worker" not in stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert load_checkpoint(run_dir)["step"] >= 3


def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from sesim.checkpoint import save_checkpoint
    from sesim.errors import DiskFull

    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "latest.pt", {"step": 1, "weights": torch.zeros(1000)})
    before = (folder / "latest.pt").read_bytes()

    def full(*args, **kwargs):  # what torch.save raises when the disk fills under its zip writer
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 470")

    monkeypatch.setattr(torch, "save", full)
    full_at = r"disk full at .*checkpoints: checkpoint latest\.pt did not fit \(~4 kB"
    with pytest.raises(DiskFull, match=full_at) as error:
        save_checkpoint(folder / "latest.pt", {"step": 2, "weights": torch.zeros(1000)})
    assert f"the previous checkpoint {folder / 'latest.pt'} is intact" in str(error.value)
    assert (folder / "latest.pt").read_bytes() == before and not list(folder.glob(".*"))
    with pytest.raises(DiskFull, match=r"~3\.8 MB needed, .*; no checkpoint had been saved before it"):
        save_checkpoint(tmp_path / "new" / "step_0000010.pt", {"weights": torch.zeros(1_000_000)})


def test_an_error_between_steps_saves_them_first_and_the_run_resumes_exactly(tmp_path, data, monkeypatch, capsys):
    """A bad image met at step 4 (checkpoints every 100 steps): steps 1-3 are saved before the
    error ends the run, and resuming them gives the weights of a run that never failed."""
    import sesim.data.unpaired as unpaired
    from sesim.errors import DataError

    original, calls = unpaired.load_rgb, {"n": 0}

    def load_rgb(path):
        calls["n"] += 1
        if calls["n"] == 13:  # batch 2, an A and a B image per item: the first image of step 4
            raise DataError("cannot read image trainA/broken.png: truncated")
        return original(path)

    monkeypatch.setattr(unpaired, "load_rgb", load_rgb)
    settings = ("train.max_steps=5", "log.checkpoint_every=100")
    with pytest.raises(DataError, match=r"broken\.png: truncated \(--set data\.on_bad_image=skip skips"):
        train(tiny_config("fsesim", data, tmp_path / "failed", *settings))
    (run_dir,) = (tmp_path / "failed").iterdir()
    assert load_checkpoint(run_dir)["step"] == 3
    out = capsys.readouterr()
    assert "saved step 3 before stopping" in out.out + out.err
    monkeypatch.setattr(unpaired, "load_rgb", original)
    resumed = train(None, resume=run_dir)
    straight = train(tiny_config("fsesim", data, tmp_path / "straight", *settings))
    a, b = load_checkpoint(straight)["networks"]["generator"], load_checkpoint(resumed)["networks"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_save_that_fails_for_the_runs_own_cause_is_not_said_twice(tmp_path):
    """When the save before failing meets the error that ends the run (a full disk), the run's one
    error line says it; a save that fails for another reason gets its own note."""
    from sesim.errors import DiskFull
    from sesim.training.loop import save_before_failing

    full = "disk full at X: checkpoint step_0000003.pt did not fit (~6.0 MB needed, 5.9 MB free)"

    class FullDisk:
        def save(self, *args):
            raise DiskFull(full)

    class Bar:
        def __init__(self):
            self.lines = []

        def write(self, text):
            self.lines.append(text)

    bar = Bar()
    save_before_failing(FullDisk(), tmp_path, 3, None, DiskFull(full), bar)
    assert bar.lines == []
    save_before_failing(FullDisk(), tmp_path, 3, None, ValueError("cannot read image a.png"), bar)
    assert bar.lines == [f"note: could not save step 3 before stopping ({full})"]
