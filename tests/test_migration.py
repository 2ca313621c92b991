"""Checkpoints and configs written with the earlier key names (``weights.spatial``, ``method: sesim``,
no ``train.schedule``) keep working: stored configs are migrated on load, and a YAML file or
``--set`` with an old name is told the new one."""

import torch

from sesim.checkpoint import load_checkpoint
from sesim.cli import main
from sesim.config import migrate_stored
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data


def _as_written_before(config: dict) -> dict:
    weights = config["weights"]
    weights["spatial"] = weights.pop("structure")
    weights["identity_spatial"] = weights.pop("identity_structure")
    weights["style"], weights["content"] = weights.pop("style_code"), weights.pop("content_code")
    config["method"] = "sesim"
    del config["train"]["schedule"]
    return config


def test_migrate_stored_renames_keys_and_values():
    config = _as_written_before(tiny_config("fsesim", "data", "runs").model_dump(mode="json"))
    config["weights"]["spatial"] = 3.0
    changes = migrate_stored(config)
    assert config["weights"]["structure"] == 3.0 and "spatial" not in config["weights"]
    assert config["method"] == "one_sided" and config["train"]["schedule"] == "step"
    assert "weights.spatial -> weights.structure" in changes and len(changes) == 6
    assert migrate_stored(config) == []  # today's names: nothing to do


def test_an_old_checkpoint_resumes_translates_and_describes_itself(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=2", "weights.structure=4"))
    path = run_dir / "checkpoints" / "latest.pt"
    document = torch.load(path, weights_only=True)
    _as_written_before(document["config"])
    torch.save(document, path)

    loaded = load_checkpoint(path)
    assert loaded["config"]["method"] == "one_sided" and loaded["config"]["weights"]["structure"] == 4
    assert loaded["config"]["train"]["schedule"] == "step"  # what it was trained with
    assert main(["info", str(run_dir)]) == 0
    assert "method: one_sided" in capsys.readouterr().out
    assert main(["translate", str(run_dir), str(data / "testA"), str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert main(["train", "--resume", str(run_dir), "--set", "train.max_steps=3"]) == 0
    assert load_checkpoint(path)["step"] == 3


def test_an_old_key_in_a_yaml_file_or_set_names_the_new_one(tmp_path, capsys):
    config = tmp_path / "old.yaml"
    config.write_text("method: sesim\nweights: {spatial: 10.0}\n")
    assert main(["train", str(config), "--data", str(tmp_path), "--dry-run"]) == 2
    assert "method: 'sesim' is now called 'one_sided'" in capsys.readouterr().err
    config.write_text("weights: {spatial: 10.0}\n")
    assert main(["train", str(config), "--data", str(tmp_path), "--dry-run"]) == 2
    assert "weights.spatial: renamed; use weights.structure" in capsys.readouterr().err
    assert main(["train", "fsesim", "--data", str(tmp_path), "--set", "weights.identity_spatial=1", "--dry-run"]) == 2
    assert "--set weights.identity_spatial=1: renamed; use weights.identity_structure" in capsys.readouterr().err


def test_an_old_fastcut_checkpoint_says_which_flip_it_continues_with(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    run_dir = train(
        tiny_config("fastcut", data, tmp_path / "runs", "train.max_steps=1", "loss.patchnce.taps=[input,block1]")
    )
    path = run_dir / "checkpoints" / "latest.pt"
    assert load_checkpoint(path).get("written_format") is None  # written today: format 3, nothing to say
    document = torch.load(path, weights_only=True)
    document["format_version"] = 2
    torch.save(document, path)
    assert main(["info", str(run_dir)]) == 0
    assert "checkpoint format 2" in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--set", "train.max_steps=2"]) == 0
    assert "trained with the earlier FastCUT flip" in capsys.readouterr().err
    assert load_checkpoint(path)["format_version"] == 3 and "written_format" not in load_checkpoint(path)
