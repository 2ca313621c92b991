"""`sesim demo` end to end at a few steps: data, training, report."""

import json

import pytest

from sesim.cli import main


def test_demo_writes_report(tmp_path, capsys):
    overrides = ["--set", "log.progress=false", "--set", "log.tensorboard=false"]
    assert main(["demo", "--out", str(tmp_path), "--steps", "2", *overrides]) == 0
    run_dir = next(tmp_path.glob("*-demo"))
    summary = json.loads((run_dir / "report.json").read_text())
    assert {"untrained", "trained", "ground_truth"} <= set(summary) and summary["steps"] == 2
    assert 0.0 < summary["untrained"] <= 1.0 and summary["ground_truth"] > 0.8
    assert (run_dir / "report.png").is_file() and "report.png" in (run_dir / "report.html").read_text()
    assert (run_dir / "losses.png").is_file() and "losses.png" in (run_dir / "report.html").read_text()
    assert set(summary["colour_error"]) <= {"sand", "roofs", "grass", "water"} and summary["colour_error"]
    assert all(0 <= n <= len(summary["per_image"]) for n in summary["lost"].values())
    out = capsys.readouterr().out
    assert "layout mIoU" in out and "colour error per class" in out


def test_a_demo_stopped_by_its_time_budget_reports_the_steps_that_trained(tmp_path, capsys):
    overrides = ["--set", "log.progress=false", "--set", "log.tensorboard=false", "--set", "train.max_minutes=0.0001"]
    assert main(["demo", "--out", str(tmp_path), "--steps", "50", *overrides]) == 0
    run_dir = next(tmp_path.glob("*-demo"))
    summary = json.loads((run_dir / "report.json").read_text())
    assert summary["steps"] < summary["max_steps"] == 50
    assert f"{summary['steps']} of 50 steps: the time budget stopped it" in (run_dir / "report.html").read_text()
    assert f"{summary['steps']} of 50 steps (the time budget)" in capsys.readouterr().out


def test_demo_refuses_settings_it_would_drop_or_contradict(tmp_path, capsys):
    for extra, message in [
        (["--set", f"data.root={tmp_path}"], "the demo trains and scores on its own data"),
        (["--set", f"log.out_dir={tmp_path}"], "use --out"),
        (["--steps", "3", "--set", "train.max_steps=5"], "both set the steps"),
        (["--steps", "0"], "demo: --steps must be at least 1, got 0"),
        (["--set", "train.batch_sise=2"], "unknown key; did you mean train.batch_size?"),
    ]:
        assert main(["demo", "--out", str(tmp_path / "runs"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "notes.txt")]) == 2
    assert "demo: --out " in (err := capsys.readouterr().err) and "notes.txt is a file; choose a folder" in err


def test_demo_data_interrupted_while_written_is_written_again(tmp_path, monkeypatch):
    """A Ctrl-C while the demo writes its domains leaves no demo-data folder to train on half of."""
    import sesim.demo
    from sesim.data.synthetic import write_domains

    def stopped(root, **sizes):
        write_domains(root, **{**sizes, "train": 3})
        raise KeyboardInterrupt

    monkeypatch.setattr(sesim.demo, "write_domains", stopped)
    with pytest.raises(KeyboardInterrupt):
        sesim.demo.demo_data(tmp_path / "demo-data")
    assert not (tmp_path / "demo-data").exists()
    monkeypatch.undo()
    root = sesim.demo.demo_data(tmp_path / "demo-data")
    assert len(list((root / "trainA").iterdir())) == 200 and len(list((root / "testL").iterdir())) == 8
    assert not list(tmp_path.glob(".*"))  # the partial folder was replaced, not left beside it
