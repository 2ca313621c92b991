"""End-to-end training on tiny nets: FSeSim and LSeSim, the G step, exact resume, checkpoints."""

import json
import os

import pytest
import torch

from sesim.checkpoint import load_checkpoint
from sesim.config import load_config
from sesim.errors import CheckpointError
from sesim.methods import OneSidedTranslation, Optimization
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("preset,keys", [("fsesim", set()), ("lsesim", {"loss/heads"})])
def test_tiny_training_runs_and_writes_artefacts(tmp_path, data, preset, keys):
    run_dir = train(tiny_config(preset, data, tmp_path, "train.max_steps=3"))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {"loss/d", "loss/g_gan", "loss/structure", "loss/g"} | keys <= set(records[-1])
    assert all(torch.isfinite(torch.tensor(v)) for r in records for k, v in r.items() if k != "time")
    assert (run_dir / "samples" / "step_0000002.png").is_file() and (run_dir / "index.html").is_file()
    assert (run_dir / "config.yaml").is_file()
    document = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert document["step"] == 3 and document["config"]["name"] == preset
    assert ("heads" in document["networks"]) == (preset == "lsesim")


def test_any_two_folders(tmp_path, data):
    folders = [f"data.folder_a={data / 'testA'}", f"data.folder_b={data / 'trainB'}", "data.root=null"]
    run_dir = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1", *folders))
    assert (run_dir / "checkpoints" / "latest.pt").is_file()


def test_training_output_to_a_file_is_one_progress_line_per_logged_step(tmp_path, data, capsys):
    train(tiny_config("fsesim", data, tmp_path, "train.max_steps=4", "log.every=2", "log.progress=true"))
    err = capsys.readouterr().err
    assert "\r" not in err  # no redrawn bar in a log file
    assert [line.split("  ")[0] for line in err.splitlines() if line.startswith("step ")] == ["step 2/4", "step 4/4"]


def test_each_run_gets_a_new_directory(tmp_path, data):
    first = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1"))
    second = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1"))
    assert first != second and first.name.startswith("001-") and second.name.startswith("002-")


@pytest.mark.numerics
@pytest.mark.parametrize("preset", ["fsesim", "lsesim"])
def test_resume_is_exact(tmp_path, data, preset):
    straight = train(tiny_config(preset, data, tmp_path / "a", "train.max_steps=6", "log.checkpoint_every=100"))
    interrupted = train(tiny_config(preset, data, tmp_path / "b", "train.max_steps=6", "log.checkpoint_every=3"))
    # Roll the interrupted run back to its step-3 checkpoint, as if it had stopped there.
    checkpoints = interrupted / "checkpoints"
    (checkpoints / "latest.pt").write_bytes((checkpoints / "step_0000003.pt").read_bytes())
    resumed = train(None, resume=interrupted)
    assert resumed == interrupted
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 6
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key} differs after resume"


@pytest.mark.numerics
def test_resume_diverges_without_rng_state(tmp_path, data):
    """The exactness test can fail: dropping the saved query RNG state changes the weights."""
    straight = train(tiny_config("fsesim", data, tmp_path / "a", "train.max_steps=6", "log.checkpoint_every=100"))
    run = train(tiny_config("fsesim", data, tmp_path / "b", "train.max_steps=6", "log.checkpoint_every=3"))
    document = torch.load(run / "checkpoints" / "step_0000003.pt", weights_only=True)
    document["processes"][0]["rng"]["queries"] = torch.Generator().manual_seed(123).get_state()
    torch.save(document, run / "checkpoints" / "latest.pt")
    train(None, resume=run)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")["networks"]["generator"]
    b = load_checkpoint(run / "checkpoints" / "latest.pt")["networks"]["generator"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.numerics
def test_generator_step_leaves_discriminator_untouched():
    cfg = load_config("lsesim", ["loss.backbone_weights=random", "loss.taps=[relu1_2,relu2_1]", "loss.window=8"])
    method = OneSidedTranslation(
        cfg.model.generator.model_copy(update={"ngf": 8, "blocks": 1}),
        cfg.model.discriminator.model_copy(update={"ndf": 8, "layers": 2}),
        cfg.loss.model_copy(update={"num_queries": 16}),
        cfg.weights,
        Optimization(pool_size=0),
    )
    real_a, real_b = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    seen = {}

    original_step = method.optimizers["generator"].step

    def record_then_step(*args, **kwargs):
        seen["d_grads"] = [p.grad for p in method.discriminator.parameters()]
        seen["d_weights"] = [p.detach().clone() for p in method.discriminator.parameters()]
        seen["h_grads"] = [p.grad for p in method.heads.parameters()]
        return original_step(*args, **kwargs)

    method.optimizers["generator"].step = record_then_step
    d_before = [p.detach().clone() for p in method.discriminator.parameters()]
    method.training_step(real_a, real_b)
    # D's step happened before G's; G's backward added no gradient to D or the heads.
    assert any(not torch.equal(a, b) for a, b in zip(d_before, seen["d_weights"], strict=True))
    after = [p.detach() for p in method.discriminator.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(seen["d_weights"], after, strict=True))
    d_grads_from_d_step = seen["d_grads"]
    assert all(g is not None for g in d_grads_from_d_step)
    # requires_grad restored for the next iteration
    assert all(p.requires_grad for p in method.discriminator.parameters())
    assert all(p.requires_grad for p in method.heads.parameters())


def test_checkpoint_errors_are_clear(tmp_path, data):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a SeSim checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    run_dir = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1"))
    raw = (run_dir / "checkpoints" / "latest.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match="method 'one_sided', not 'cyclegan'"):
        load_checkpoint(run_dir, method="cyclegan")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"format": "sesim-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="would run code"):
        load_checkpoint(tmp_path / "evil.pt")


def test_deterministic_flag_is_restored_after_training(tmp_path, data):
    assert not torch.are_deterministic_algorithms_enabled()
    train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1"))  # tiny configs ask for determinism
    assert not torch.are_deterministic_algorithms_enabled()


def test_format_1_checkpoints_still_resume(tmp_path, data):
    """Checkpoints written before multi-process training (format 1) load and resume."""
    run = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=4", "log.checkpoint_every=2"))
    document = torch.load(run / "checkpoints" / "step_0000002.pt", weights_only=True)
    (state,) = document.pop("processes")
    document.update(format_version=1, rng=state["rng"], pool=state["pools"]["fake_b"])
    document.pop("best")
    torch.save(document, run / "checkpoints" / "latest.pt")
    train(None, resume=run)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 4


def test_old_step_checkpoints_are_pruned_and_latest_is_no_second_copy(tmp_path, data):
    run_dir = train(
        tiny_config("fsesim", data, tmp_path, "train.max_steps=5", "log.checkpoint_every=1", "log.keep_checkpoints=2")
    )
    folder = run_dir / "checkpoints"
    assert sorted(p.name for p in folder.glob("step_*.pt")) == ["step_0000004.pt", "step_0000005.pt"]
    assert os.path.samefile(folder / "latest.pt", folder / "step_0000005.pt")  # one file on disk
    assert load_checkpoint(folder / "latest.pt")["step"] == 5
    assert not list(folder.glob(".*"))  # no temporary files left


def test_epoch_schedule_is_the_original_rule_and_step_stays_an_option(tmp_path, data):
    """CycleGAN/CUT/F-LSeSim: 1 - max(0, e + 1 - epochs) / (decay_epochs + 1), once per epoch."""
    settings = ("train.max_steps=6", "train.epochs=1", "train.decay_epochs=2", "train.lr=0.1")
    by_epoch = train(tiny_config("fsesim", data, tmp_path / "a", *settings, "train.schedule=epoch"))
    by_step = train(tiny_config("fsesim", data, tmp_path / "b", *settings, "train.schedule=step"))

    def rates(run_dir):  # the rate each logged step leaves for the next one
        lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        return [round(line["lr"], 4) for line in lines if "lr" in line]

    # 2 steps an epoch: epoch 0 at 1, epoch 1 at 1 - 1/3, epoch 2 at 1 - 2/3 (never 0)
    assert rates(by_epoch) == [0.1, 0.0667, 0.0667, 0.0333, 0.0333, 0.0]
    assert rates(by_step) == [0.1, 0.1, 0.075, 0.05, 0.025, 0.0]


def test_checkpoints_from_before_the_schedule_key_resume_per_step(tmp_path, data):
    run_dir = train(tiny_config("fsesim", data, tmp_path, "train.max_steps=1"))
    document = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    del document["config"]["train"]["schedule"]
    torch.save(document, run_dir / "checkpoints" / "latest.pt")
    assert load_checkpoint(run_dir)["config"]["train"]["schedule"] == "step"
