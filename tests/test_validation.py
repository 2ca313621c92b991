"""Validation during training: a held-out split scored every N steps, ``best.pt`` kept."""

import json

import pytest

from sesim.checkpoint import load_checkpoint
from sesim.config import load_config
from sesim.errors import ConfigError
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.mark.numerics
@pytest.mark.parametrize("metric,lower_is_better", [("rmse", True), ("psnr", False), ("fd_efficientnet", True)])
def test_validation_logs_the_curve_and_keeps_the_best(tmp_path, data, metric, lower_is_better):
    extra = ["train.max_steps=4", "validation.every=2", f"validation.folder_a={data / 'testA'}",
             f"validation.folder_b={data / 'testB'}", f"validation.metric={metric}", "validation.size=32"]  # fmt: skip
    run_dir = train(tiny_config("fsesim", data, tmp_path, *extra))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    curve = {r["step"]: r[f"val/{metric}"] for r in records if f"val/{metric}" in r}
    assert sorted(curve) == [2, 4]
    choose = min if lower_is_better else max
    best_step = choose(curve, key=curve.get)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best"]["value"] == pytest.approx(curve[best_step])
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["best"]["step"] == best_step
    events = [r for r in records if r.get("event") == "best"]
    assert events[0]["step"] == 2


def test_validation_needs_its_folders():
    with pytest.raises(ConfigError, match=r"validation\.folder_a"):
        load_config("fsesim", ["validation.every=10"])
