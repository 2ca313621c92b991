"""`sesim train --resume` does what the user says: a dry run only prints, --set extends or
refuses with a reason, the data path survives a change of folder, --init-from fine-tunes; a run
that fails before its first step leaves no folder; the start banner and timestamps."""

import hashlib
import json
import shutil

import pytest

from sesim.checkpoint import load_checkpoint
from sesim.cli import main
from tests.helpers import TINY, tiny_data

FLAGS = [arg for item in TINY for arg in ("--set", item)]


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture()
def started(tmp_path, monkeypatch, capsys):
    """A 3-step run started from tmp_path with a *relative* data path."""
    monkeypatch.chdir(tmp_path)
    tiny_data(tmp_path / "tiny")
    assert main(["train", "fsesim", "--data", "tiny", *FLAGS, *sets("train.max_steps=3", "log.out_dir=runs")]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines() if "loss/g" in line]


def digest(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_dry_run_with_resume_only_prints(started, capsys):
    before = digest(started)
    assert main(["train", "--resume", str(started), "--dry-run", *sets("train.max_steps=6")]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 6" in out and "would resume" in out and "at step 3" in out
    assert digest(started) == before


def test_a_resume_reads_its_checkpoint_once(started, capsys, monkeypatch):
    from sesim.training import resolve

    loaded = []
    monkeypatch.setattr(resolve, "load_checkpoint", lambda path: loaded.append(path) or load_checkpoint(path))
    assert main(["train", "--resume", str(started), *sets("train.max_steps=4")]) == 0
    assert loaded == [str(started)] and steps(started) == [1, 2, 3, 4]


def test_set_on_resume_extends_the_run(started, capsys):
    assert main(["train", "--resume", str(started), *sets("train.max_steps=6")]) == 0
    captured = capsys.readouterr()
    assert steps(started) == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(started)["step"] == 6 and load_checkpoint(started)["config"]["train"]["max_steps"] == 6
    assert "train.max_steps: 3 -> 6" in captured.err and "max_steps: 6" in (started / "config.yaml").read_text()


@pytest.mark.parametrize(
    "assignment,fragment",
    [
        ("model.generator.ngf=16", "model.generator.ngf cannot change when resuming"),
        ("loss.taps=[relu1_1]", "loss.taps cannot change when resuming"),
        ("method=cyclegan", "method cannot change when resuming"),
        ("train.max_stepz=9", "unknown key; did you mean train.max_steps?"),  # a typo is a typo, not a rule
        ("model.generator.ngf=abc", "valid integer"),
        ("train.max_steps=2", "train.max_steps=2 is below the step 3 the run has reached"),
    ],
)
def test_set_on_resume_refuses_what_made_the_weights(started, capsys, assignment, fragment):
    before = digest(started)
    assert main(["train", "--resume", str(started), *sets(assignment)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert "--init-from" in err or "cannot change" not in fragment  # the way out is named
    assert digest(started) == before


def test_resume_from_another_folder_and_with_moved_data(started, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(started), *sets("train.max_steps=4")]) == 0  # stored absolute
    shutil.move(tmp_path / "tiny", tmp_path / "moved")
    before = digest(started)
    assert main(["train", "--resume", str(started), *sets("train.max_steps=5")]) == 2
    err = capsys.readouterr().err
    assert "the run's data folder" in err and "--data DIR" in err and digest(started) == before
    assert main(["train", "--resume", str(started), "--data", str(tmp_path / "moved"), *sets("train.max_steps=5")]) == 0
    assert steps(started) == [1, 2, 3, 4, 5]
    assert load_checkpoint(started)["config"]["data"]["root"] == str(tmp_path / "moved")


def test_resume_and_a_preset_together_is_an_error(started, capsys):
    assert main(["train", "fsesim", "--resume", str(started)]) == 2
    assert "not both" in capsys.readouterr().err


def test_the_library_is_told_the_same_no_resume_is_silently_dropped(started):
    from sesim.config import load_config
    from sesim.errors import ConfigError
    from sesim.training.loop import train
    from sesim.training.resolve import resolve_run

    with pytest.raises(ConfigError, match=r"give a config or --resume .* not both"):
        train(load_config("fsesim"), resume=started)
    with pytest.raises(TypeError, match="pass resume= to resolve_run"):
        train(resolve_run("fsesim", data="tiny"), resume=started)
    assert steps(started) == [1, 2, 3]


def test_init_from_fine_tunes_in_a_new_run(started, tmp_path, capsys):
    assert main(["train", "fsesim", "--data", "tiny", "--init-from", str(started), *FLAGS,
                 *sets("train.max_steps=1", "log.out_dir=runs")]) == 0  # fmt: skip
    assert "weights from" in capsys.readouterr().err
    new = max((tmp_path / "runs").iterdir())
    assert new != started and steps(new) == [1]
    document = load_checkpoint(new)
    assert document["config"]["train"]["init_from"] == str(started)
    assert document["step"] == 1 and document["optimizers"]["generator"]["state"]  # fresh Adam, one step

    # A network of another shape is refused with the reason, and leaves no run folder.
    assert main(["train", "fsesim", "--data", "tiny", "--init-from", str(started), *FLAGS,
                 *sets("train.max_steps=1", "log.out_dir=runs", "model.generator.ngf=4")]) == 2  # fmt: skip
    assert "does not fit this config" in capsys.readouterr().err
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    (data / "trainA" / "0000.png").write_bytes(b"not a png")
    out = tmp_path / "runs"
    assert main(["train", "fsesim", "--data", str(data), *FLAGS, *sets(f"log.out_dir={out}", "train.max_steps=2")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_banner_and_timestamps(started, tmp_path, capsys):
    assert main(["train", "fsesim", "--data", "tiny", *FLAGS, *sets("train.max_steps=2", "log.out_dir=runs")]) == 0
    out = capsys.readouterr().out
    assert "6 A images" in out and "6 B images" in out and "device: cpu" in out
    assert "steps: 2" in out and "compresses the preset's 200+200 epochs" in out
    records = [json.loads(line) for line in (started / "log.jsonl").read_text().splitlines()]
    assert records and all(record["time"].endswith("+00:00") for record in records)


def test_time_budget_stops_cleanly_and_resume_continues(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_data(tmp_path / "tiny")
    budget = sets("train.max_steps=4", "log.out_dir=runs", "log.checkpoint_every=100", "train.max_minutes=0.0001")
    assert main(["train", "fsesim", "--data", "tiny", *FLAGS, *budget]) == 0
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "train.max_minutes=0.0001 spent at step 1 of 4" in err and "sesim train --resume runs/001-fsesim" in err
    assert load_checkpoint(run_dir)["step"] == 1  # saved although checkpoint_every is 100
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "time_budget" for e in events)
    assert main(["train", "--resume", str(run_dir), *sets("train.max_minutes=null")]) == 0
    assert steps(run_dir) == [1, 2, 3, 4]


def test_resuming_an_older_step_of_a_run_is_refused_and_nothing_is_overwritten(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_data(tmp_path / "tiny")
    settings = sets("train.max_steps=4", "log.out_dir=runs", "log.checkpoint_every=2")
    assert main(["train", "fsesim", "--data", "tiny", *FLAGS, *settings]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    folder = run_dir / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    older = folder / "step_0000002.pt"
    assert main(["train", "--resume", str(older), "--set", "train.max_steps=6"]) == 2
    message = capsys.readouterr().err
    assert "already reached step 4" in message and "--init-from" in message and "Traceback" not in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["train", "--resume", str(folder / "step_0000004.pt"), "--set", "train.max_steps=5"]) == 0  # newest


def test_a_run_has_one_writer(started, capsys):
    """A second `--resume` of a run that is training is refused (one line, exit 2) and changes nothing."""
    from sesim.training.chores import RunLock

    holder = RunLock()
    holder.acquire(started)  # as the first process would, while it trains
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in started.rglob("*") if p.name != ".lock")
        assert main(["train", "--resume", str(started), "--set", "train.max_steps=5"]) == 2
        assert "is being trained by process" in capsys.readouterr().err
        assert sorted((p.name, p.stat().st_mtime_ns) for p in started.rglob("*") if p.name != ".lock") == before
    finally:
        holder.release()
    assert main(["train", "--resume", str(started), "--set", "train.max_steps=4"]) == 0  # free again


def test_a_hand_edited_config_is_never_ignored_without_a_word(started, capsys):
    path = started / "config.yaml"
    original = path.read_text()
    path.write_text(original.replace("ngf: 8", "ngf: 16"))  # a network setting: the weights say otherwise
    assert main(["train", "--resume", str(started), "--set", "train.max_steps=4"]) == 2
    err = capsys.readouterr().err
    assert "edited by hand (model.generator.ngf: 8 -> 16)" in err and "Traceback" not in err
    path.write_text("train: [unclosed")
    assert main(["train", "--resume", str(started), "--set", "train.max_steps=4"]) == 2
    assert "no longer reads as this run's config" in capsys.readouterr().err
    path.write_text(original.replace("every: 1", "every: 2", 1))  # log.every: a resume may change it
    assert main(["train", "--resume", str(started), "--set", "train.max_steps=4"]) == 0
    assert "log.every: 2 in the file, 1 in the checkpoint" in capsys.readouterr().err


def test_a_resume_rewrites_a_resumable_hand_edit_it_overruled(started, capsys):
    """Editing train.max_steps in the file does not extend the run (that is --set's job), and the
    file does not go on claiming a value that never applied."""
    path = started / "config.yaml"
    path.write_text(path.read_text().replace("max_steps: 3", "max_steps: 9"))
    assert main(["train", "--resume", str(started)]) == 0
    assert "train.max_steps: 9 in the file, 3 in the checkpoint" in capsys.readouterr().err
    assert steps(started) == [1, 2, 3] and "max_steps: 3" in path.read_text() and "max_steps: 9" not in path.read_text()


def test_a_comment_added_to_config_yaml_is_left_alone(started):
    path = started / "config.yaml"
    path.write_text("# my notes on this run\n" + path.read_text())
    assert main(["train", "--resume", str(started)]) == 0
    assert path.read_text().startswith("# my notes on this run\n")
