"""The benchmark scripts' own machinery: interleaved timing, the revision comparison, the table."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sesim.losses import sample_query_ids, spatial_correlative_loss

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling `common`
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_interleaved_medians_times_every_function_in_shuffled_rounds():
    common = _load("common")
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    medians = common.interleaved_medians(fns, torch.device("cpu"), repeats=6, warmup=1)
    assert set(medians) == set("abcd") and all(ms >= 0 for ms in medians.values())
    timed = calls[4:]  # after one warm-up call each
    rounds = [tuple(timed[i : i + 4]) for i in range(0, len(timed), 4)]
    assert len(rounds) == 6 and all(sorted(r) == list("abcd") for r in rounds)
    assert len(set(rounds)) > 1, "every round ran in the same order"


def test_cpu_name_says_which_vector_kernels_ran(monkeypatch):
    """Two machines with one model name ("AMD EPYC"), one with AVX-512 and one without, train at
    twofold different speeds: the recorded name tells them apart."""
    common = _load("common")
    monkeypatch.setattr(common, "cpu_model", lambda: "AMD EPYC")
    for capability, name in [("AVX512", "AMD EPYC (AVX-512)"), ("AVX2", "AMD EPYC (AVX2)"), ("DEFAULT", "AMD EPYC")]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda capability=capability: capability)
        assert common.cpu_name() == name


def _in_git_checkout() -> bool:
    probe = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _in_git_checkout(), reason="needs the repository's git history")
def test_loss_at_a_revision_is_the_loss_of_that_commit():
    loss = _load("loss")
    at_head = loss.loss_at_revision("HEAD")
    source, target = torch.randn(1, 8, 9, 11), torch.randn(1, 8, 9, 11)
    ids = sample_query_ids(9, 11, 20, generator=torch.Generator().manual_seed(0))
    assert at_head is not spatial_correlative_loss
    assert torch.allclose(at_head(source, target, ids, 5), spatial_correlative_loss(source, target, ids, 5))
    with pytest.raises(ValueError, match="--compare-revision: git cannot show no-such-revision"):
        loss.loss_at_revision("no-such-revision")


def test_loss_script_rejects_an_unknown_revision_with_exit_2():
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "loss.py"), "--device", "cpu", "--compare-revision", "no-such-revision"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "--compare-revision" in run.stderr and "Traceback" not in run.stderr


def test_loss_table_shows_the_revision_column_only_when_timed():
    tables = _load("tables")
    machine = {"torch": "2.x", "device": "cpu", "threads": 2, "cpu": "x86_64", "date": "2026-11-28"}
    rows = [
        {"batch": 1, "matmul_floor_ms": 30.0},
        {"batch": 1, "window": None, "sesim_ms": 60.0, "contrastive_ms": 200.0, "authors_loop_ms": 150.0,
         "speedup": 2.5, "at_abc123_ms": 70.0},
        {"batch": 1, "vgg16_backbone_fwd_bwd_ms": 700.0},
    ]  # fmt: skip
    with_revision = tables.loss({"machine": machine, "repeats": 3, "rows": rows})
    assert "| at `abc123` |" in with_revision
    assert "| 1 | global | 60.0 ms | 70.0 ms | 150.0 ms | 2.5x |" in with_revision
    del rows[1]["at_abc123_ms"]
    without = tables.loss({"machine": machine, "repeats": 3, "rows": rows})
    assert "abc123" not in without and "| 1 | global | 60.0 ms | 150.0 ms | 2.5x | 200.0 ms | 30.0 ms |" in without


def test_study_cells_go_through_the_commands_and_a_rerun_continues(tmp_path):
    """Two cells of the layouts study at 2 steps: each is appended as it finishes; running the same
    grid again trains nothing; one more seed adds only its cell; a grid of another budget is refused."""
    results, out = tmp_path / "study.json", tmp_path / "runs"
    command = [sys.executable, str(BENCHMARKS / "study.py"), "layouts", "--steps", "2", "--results", str(results),
               "--out", str(out), "--cells", "GAN alone", "FSeSim l1", "--seeds", "0"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    import json

    cells = json.loads(results.read_text())["cells"]
    assert [(c["method"], c["seed"]) for c in cells] == [("GAN alone", 0), ("FSeSim l1", 0)]
    for cell in cells:
        assert 0 <= cell["layout_miou"] <= 1 and set(cell["colour_error"]) <= {"0", "1", "2", "3"}
        assert cell["psnr"] > 0 and "loss/g" in cell["final_losses"]
        assert cell["cpu"] and cell["cpu"] != "x86_64"  # the CPU's name: sittings may run on other machines
    import yaml

    gan, l1 = (yaml.safe_load((Path(c["run_dir"]) / "config.yaml").read_text()) for c in cells)
    assert gan["loss"]["structure"] == "none" and l1["loss"]["structure"] == "sesim" and l1["loss"]["mode"] == "l1"
    assert gan["model"] == l1["model"] and gan["train"]["max_steps"] == l1["train"]["max_steps"] == 2  # equal budget
    again = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    assert "2 of 2 cells done" in again.stderr and len(json.loads(results.read_text())["cells"]) == 2
    listed = subprocess.run([*command[:-1], "0", "1", "--list"], check=True, capture_output=True, text=True, cwd=ROOT)
    assert listed.stdout.count("todo") == 2 and listed.stdout.count("done") == 2
    refused = subprocess.run([*command[:4], "3", *command[5:]], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "at 2 steps, not 3" in refused.stderr


def test_every_recorded_study_cell_ran_with_the_keys_study_py_names_for_it():
    """The grids in study.py describe the committed results: each recorded cell's config holds its
    task's shared recipe and its own changes (a preset change does not silently redefine a finished
    cell: keys that changed since are pinned in the spec). The first demo search, on the earlier
    domains, is history (``study_demo_colour_only_cpu.json``): study.py no longer runs it."""
    import json

    import yaml

    study = _load("study")
    checked = 0
    for name, grid in study.tasks(None).items():
        specs = {task.name: task for task in grid}
        path = BENCHMARKS / "results" / f"study_{name}_cpu.json"
        for cell in json.loads(path.read_text())["cells"]:
            task = specs[cell["task"]]
            _, extra = task.cells[cell["method"]]
            for assignment in [*task.recipe, *extra]:
                key, _, value = assignment.partition("=")
                recorded = cell["config"]
                for part in key.split("."):
                    recorded = recorded[part]
                assert recorded == yaml.safe_load(value), f"{path.name}: {cell['method']} seed {cell['seed']}: {key}"
                checked += 1
    assert checked > 100


def test_the_study_table_names_each_machine_and_compares_against_a_seeded_best():
    """One CPU: its name; cells from sittings on other machines: each CPU with its cell count
    (a cell without a ``cpu`` ran on the study's first machine) and training seconds per CPU.
    "vs best" compares against the best mean with at least two seeds, not a single lucky seed."""
    tables = _load("tables")

    def cell(method, seed, psnr, **more):
        return {"task": "t", "method": method, "seed": seed, "psnr": psnr, "train_seconds": 100.0, **more}

    machine = {"cpu": "Xeon", "threads": 2, "torch": "2"}
    one = {"machine": machine, "cells": [cell("a", 0, 10.0), cell("a", 1, 11.0)]}
    assert tables.study(one).startswith("`benchmarks/study.py`, Xeon, 2 threads")
    assert "| a | 2 | 10.50 +- 0.71 | 100 +- 0 | 0: 10.00, 1: 11.00 | best |" in tables.study(one)
    cells = [
        cell("a", 0, 10.0), cell("a", 1, 11.0, cpu="EPYC", train_seconds=250.0),  # a: 10-11 dB
        cell("b", 0, 14.0), cell("b", 1, 15.0),  # b: 14-15 dB, the best of two seeds
        cell("c", 0, 13.0), cell("c", 1, 16.0, cpu="EPYC"),  # c: overlaps b
        cell("d", 0, 20.0, cpu="EPYC"),  # one lucky seed
    ]  # fmt: skip
    table = tables.study({"machine": machine, "cells": cells})
    assert "4 cells on Xeon; 3 cells on EPYC, 2 threads" in table
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {line.split(" | ")[0][2:]: line for line in lines}
    assert rows["a"].endswith("| 100 / 250 | 0: 10.00, 1: 11.00 | worse beyond the seed spread |")
    assert rows["b"].endswith("| 100 / - | 0: 14.00, 1: 15.00 | best of n >= 2 |")
    assert rows["c"].endswith("| within the seed spread |") and rows["d"].endswith("| (one seed) |")


def test_a_maps_cell_is_scored_both_ways_with_the_gcgan_protocol_and_fd(tmp_path):
    """The maps study on a stand-in set laid out as the real one (1096 numbered pairs): each direction
    trains on the 1000 training files with its own direction and is scored on the 96 held-out pairs,
    with the paired scores and the EfficientNet-Lite0 Frechet distance."""
    from PIL import Image

    maps = tmp_path / "maps"
    for domain, colour in (("trainA", (90, 120, 60)), ("trainB", (230, 230, 220))):
        (maps / domain).mkdir(parents=True)
        Image.new("RGB", (32, 32), colour).save(maps / domain / "1.jpg")
        for i in range(2, 1097):
            (maps / domain / f"{i}.jpg").symlink_to(maps / domain / "1.jpg")
    results = tmp_path / "study.json"
    command = [sys.executable, str(BENCHMARKS / "study.py"), "maps", "--steps", "1", "--results", str(results),
               "--out", str(tmp_path / "out"), "--maps", str(maps), "--cells", "GAN alone", "--seeds", "0"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    import json

    import yaml

    cells = json.loads(results.read_text())["cells"]
    assert [c["task"] for c in cells] == ["maps aerial->map", "maps map->aerial"]
    for cell, direction in zip(cells, ("AtoB", "BtoA"), strict=True):
        assert cell["pairs"] == 96 and cell["rmse"] > 0 and isinstance(cell["fd_efficientnet"], float)
        config = yaml.safe_load((Path(cell["run_dir"]) / "config.yaml").read_text())
        assert config["data"]["direction"] == direction and config["train"]["max_steps"] == 1
        assert len(list((Path(cell["run_dir"]).parent.parent / "data" / "maps-split" / "trainA").iterdir())) == 1000
