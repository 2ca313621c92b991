"""Issue 30: activation checkpointing, out-of-memory answers and the probe."""

import copy
import json
import os
import statistics
import subprocess
import sys

import pytest
import torch

from sesim.config import load_config
from sesim.networks import PatchDiscriminator, ResnetGenerator
from sesim.networks.layers import checkpoint_activations
from sesim.training.loop import build_method, train
from tests.helpers import TINY, tiny_config, tiny_data


def _grads(generator, discriminator, images):
    generator.zero_grad()
    discriminator.zero_grad()
    loss = (discriminator(generator(images)) - 1).square().mean() + (generator(images) - images).abs().mean()
    loss.backward()
    return {name: p.grad.clone() for net in (generator, discriminator) for name, p in net.named_parameters()}


@pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels
def test_checkpointed_networks_give_the_plain_gradients():
    torch.manual_seed(0)
    generator, discriminator = ResnetGenerator(ngf=8, blocks=3), PatchDiscriminator(ndf=8)
    plain = _grads(generator, discriminator, images := torch.rand(2, 3, 48, 48) * 2 - 1)
    twins = copy.deepcopy(generator), copy.deepcopy(discriminator)
    assert all(checkpoint_activations(net) for net in twins)
    checkpointed = _grads(*twins, images)
    assert set(checkpointed) == set(plain)
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, rtol=1e-5, atol=1e-7), name
    # state dicts keep their keys, and without a gradient nothing is recomputed
    assert twins[0].state_dict().keys() == generator.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(twins[0](images), generator(images))


def test_checkpointing_saves_activation_memory():
    """What is kept for the backward pass (saved tensors), with and without."""
    generator = ResnetGenerator(ngf=8, blocks=4)
    images = torch.rand(1, 3, 64, 64)

    def saved_bytes(net):
        total = []

        def pack(tensor):
            total.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            net(images).mean()
        return sum(total)

    plain = saved_bytes(generator)
    checkpoint_activations(generator)
    assert saved_bytes(generator) < plain / 3


@pytest.mark.numerics
def test_a_run_with_checkpointing_trains_the_same_weights(tmp_path):
    data = tiny_data(tmp_path / "data")
    settings = ("train.max_steps=2", "train.precision=fp64")
    plain = train(tiny_config("fsesim", data, tmp_path / "plain", *settings))
    kept = train(tiny_config("fsesim", data, tmp_path / "kept", *settings, "train.activation_checkpointing=true"))
    losses = [
        [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"loss/g"' in line]
        for run in (plain, kept)
    ]
    for a, b in zip(*losses, strict=True):
        assert b["loss/g"] == pytest.approx(a["loss/g"], rel=1e-9) and b["loss/d"] == pytest.approx(
            a["loss/d"], rel=1e-9
        )


def test_checkpointing_a_network_without_a_sequence_is_refused():
    config = load_config("multimodal", ["train.activation_checkpointing=true", "loss.backbone_weights=random",
                                        "loss.backbone=vgg16"])  # fmt: skip
    with pytest.raises(ValueError, match=r"train\.activation_checkpointing: generator .* has no layer sequence"):
        build_method(config, torch.device("cpu"))


def _sesim(*args, memory=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if memory:
        env["SESIM_MAX_MEMORY"] = memory
    return subprocess.run([sys.executable, "-m", "sesim.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_a_run_that_cannot_fit_is_refused_before_it_starts(tmp_path):
    """The issue's case (4096 crops, batch 8) on a 3 GiB budget: one line, exit 2, no run folder,
    and no out-of-memory kill."""
    data = tiny_data(tmp_path / "data")
    sets = ["data.crop_size=4096", "data.load_size=4096", "train.batch_size=8", "data.workers=0",
            f"log.out_dir={tmp_path / 'runs'}"]  # fmt: skip
    result = _sesim("train", "demo", "--data", str(data), *[a for s in sets for a in ("--set", s)], memory="3G")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "train: batch 8 of 4096x4096 crops needs more than ~" in result.stderr
    assert "data.crop_size" in result.stderr and not list((tmp_path / "runs").glob("*"))


def test_an_allocation_that_fails_under_the_cap_is_one_line(tmp_path):
    """A step whose real allocations exceed the process's cap (the estimate before the start only
    bounds the generator from below): torch's allocator fails, the command answers in one line."""
    data = tiny_data(tmp_path / "data")
    sets = ["data.crop_size=512", "data.load_size=512", "train.batch_size=4", "data.workers=0",
            f"log.out_dir={tmp_path / 'runs'}"]  # fmt: skip
    result = _sesim("train", "demo", "--data", str(data), *[a for s in sets for a in ("--set", s)], memory="3G")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.splitlines()[-1]
    assert "out of memory on cpu at step 1 (one_sided, batch 4 of 512x512 crops)" in last and "Traceback" not in last
    assert "--set train.activation_checkpointing=true" in last and not list((tmp_path / "runs").glob("*"))


def test_running_out_of_memory_mid_run_keeps_the_checkpoint_and_says_how_to_go_on(tmp_path, capsys, monkeypatch):
    from sesim.checkpoint import load_checkpoint
    from sesim.cli import main
    from sesim.methods import OneSidedTranslation

    data = tiny_data(tmp_path / "data")
    original, calls = OneSidedTranslation.training_step, {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # what torch's CPU allocator raises when the cap (or the machine) is reached
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes.")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OneSidedTranslation, "training_step", step)
    sets = [*TINY, "train.max_steps=5", "log.checkpoint_every=2", f"log.out_dir={tmp_path / 'runs'}"]
    assert main(["train", "fsesim", "--data", str(data), *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert err.count("\n") == 1 and "out of memory on cpu at step 3 (one_sided, batch 2 of 32x32 crops)" in err
    assert (
        f"step 2 is saved: continue with sesim train --resume {run_dir} --set train.activation_checkpointing=true"
        in err
    )
    assert load_checkpoint(run_dir)["step"] == 2


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError(),
     RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes.")],
)  # fmt: skip
def test_any_command_that_runs_out_of_memory_answers_in_one_line(tmp_path, capsys, monkeypatch, error):
    import sesim.analysis.alignment as alignment
    from sesim.cli import main

    def analyze(*args, **kwargs):
        raise error

    monkeypatch.setattr(alignment, "analyze", analyze)
    folder = tmp_path / "a"
    folder.mkdir()
    assert main(["analyze", "--a", str(folder), "--b", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sesim: error: sesim analyze ran out of memory at --size 256 (") and err.count("\n") == 1
    assert "a smaller --size or --max-pairs" in err
    args = ["analyze", "--a", str(folder), "--b", str(folder), "--out", str(tmp_path / "out"), "--debug"]
    assert main(args) == 2  # --debug shows the traceback and keeps the exit code
    assert "Traceback" in capsys.readouterr().err


def test_other_runtime_errors_stay_bugs(tmp_path, monkeypatch):
    import sesim.analysis.alignment as alignment
    from sesim.cli import main

    def analyze(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(alignment, "analyze", analyze)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["analyze", "--a", str(tmp_path), "--b", str(tmp_path), "--out", str(tmp_path / "out")])


def test_the_search_backs_off_until_a_value_runs():
    from sesim.training.probe import largest

    tried = []

    def works(value):
        tried.append(value)
        return value <= 50

    assert largest(1, 100, works) == 42  # 100, 75, 56 do not run; 42 does
    assert tried == [100, 75, 56, 42] and largest(1, 40, works) == 40
    tried.clear()
    assert largest(64, 1000, lambda side: tried.append(side) or side <= 500, 16) == 400
    assert tried == [1000, 736, 544, 400] and all(side % 16 == 0 for side in tried[1:])
    assert largest(8, 8, works) == 8


def _max_rss_of(argv, env):
    code = ("import resource, sys; from sesim.cli import main; code = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, int(result.stdout.split("MAXRSS")[-1]) * 1024


def test_the_probe_measures_what_the_run_then_takes(tmp_path):
    """The probe's peak memory within 15% of the real run's, its step time within 20% of the real
    run's median (demo networks at 96 px, batch 4: big enough that activations count)."""
    data = tiny_data(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    sets = ["data.crop_size=96", "data.load_size=100", "train.batch_size=4", "data.workers=0", "train.max_steps=10",
            "log.every=1", "log.progress=false", "log.tensorboard=false", "log.sample_every=1000",
            "log.checkpoint_every=1000", f"log.out_dir={tmp_path / 'runs'}"]  # fmt: skip
    flags = ["train", "demo", "--data", str(data), *[a for s in sets for a in ("--set", s)]]
    out, probe_rss = _max_rss_of([*flags, "--probe", "--json", "--no-search"], env)
    measured = json.loads(out.split("MAXRSS")[0])
    assert measured["peak_memory"]["resident"] <= probe_rss  # what the process reached by then
    assert not (tmp_path / "runs").exists()  # the probe writes no run folder
    _, run_rss = _max_rss_of(flags, env)
    (run_dir,) = (tmp_path / "runs").iterdir()
    rates = [json.loads(line)["images_per_s"] for line in (run_dir / "log.jsonl").read_text().splitlines()
             if '"images_per_s"' in line][2:]  # fmt: skip
    run_step = statistics.median(4 / rate for rate in rates)
    assert measured["peak_memory"]["resident"] == pytest.approx(run_rss, rel=0.15)
    assert measured["step_s_median"] == pytest.approx(run_step, rel=0.2), (measured["step_s"], run_step)
    assert measured["batch_size"] == 4 and measured["image_size"] == [96, 96] and measured["total_steps"] == 10


def test_the_probe_finds_a_batch_and_a_crop_that_fit_and_prints_them(tmp_path):
    data = tiny_data(tmp_path / "data")
    sets = [*TINY, "data.crop_size=32", f"log.out_dir={tmp_path / 'runs'}"]
    result = _sesim("train", "fsesim", "--data", str(data), *[a for s in sets for a in ("--set", s)], "--probe",
                    memory="2500M")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("# ok: data: 6 A images") for line in lines)
    batch = next(line for line in lines if "largest batch that fits at 32x32" in line)
    crop = next(line for line in lines if "largest crop that fits at batch 1" in line)
    assert int(batch.split(": ")[1].split(" ")[0]) > 2 and int(crop.split(": ")[1].split(" ")[0]) > 32
    assert "step:" in result.stdout and "images/s" in result.stdout and "finished about" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_the_probe_measures_a_resumed_run_as_it_would_go_on(tmp_path, capsys, monkeypatch):
    """... reading the checkpoint once and building the run once (its checks use that run)."""
    from sesim.cli import main
    from sesim.training import loop, resolve

    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=1"))
    before = sorted(p.name for p in run_dir.rglob("*"))
    calls = {"load_checkpoint": 0, "build_method": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(resolve, "load_checkpoint", counted("load_checkpoint", resolve.load_checkpoint))
    monkeypatch.setattr(loop, "build_method", counted("build_method", loop.build_method))
    argv = ["train", "--resume", str(run_dir), "--set", "train.max_steps=9", "--probe", "--json", "--no-search"]
    capsys.readouterr()
    assert main(argv) == 0
    measured = json.loads(capsys.readouterr().out)
    assert calls == {"load_checkpoint": 1, "build_method": 1}
    assert any(line.startswith("data: ") for line in measured["checks"])
    assert (
        measured["total_steps"] == 9
        and measured["steps_left"] == 8
        and measured["batch_size"] == 2
        and measured["image_size"] == [32, 32]
    )
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written into the run


def test_the_pre_start_estimate_counts_each_activation_once_and_no_weight():
    """A convolution keeps its input and its weight, a ReLU its output, which the next
    convolution keeps as its input: the activations are the input and the ReLU's output, once."""
    from torch import nn

    from sesim.runtime import saved_bytes

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    assert saved_bytes(net, torch.zeros(1, 3, 16, 16)) == (3 + 8) * 16 * 16 * 4


def test_a_probe_of_a_run_that_does_not_fit_says_so_in_one_line(tmp_path):
    data = tiny_data(tmp_path / "data")
    sets = ["data.crop_size=512", "data.load_size=512", "train.batch_size=4", "data.workers=0"]
    result = _sesim("train", "demo", "--data", str(data), *[a for s in sets for a in ("--set", s)], "--probe",
                    memory="2500M")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "probe: a step of batch 4 of 512x512 runs out of memory on cpu" in (
        result.stderr
    )


@pytest.mark.parametrize("hours,text", [(0.005, "18 s"), (0.5, "30 min"), (2.25, "2.2 h"), (75.5, "3 days 3.5 h")])
def test_the_probe_states_a_schedule_in_the_unit_a_reader_wants(hours, text):
    from sesim.training.probe import _duration

    assert _duration(hours) == text
