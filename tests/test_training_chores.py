"""The training loop's chores, each on its own (the loop's end-to-end tests are test_training.py
and test_reliability.py), and the small shared helpers they and the commands use."""

import datetime
import io
from unittest import mock

import pytest
import torch
from PIL import Image

from sesim.config import TrainConfig
from sesim.data.images import image_grid, same_size_batches
from sesim.losses import info_nce
from sesim.methods import NonFiniteLoss
from sesim.training.chores import (
    BestScore,
    NonFiniteBudget,
    SkippedFiles,
    SkippedUpdates,
    Throughput,
    TimeBudget,
    TrainingStopped,
    plan_steps,
)
from sesim.training.logging import Progress


def test_plan_compresses_the_epochs_into_max_steps_keeping_their_proportion():
    plan = plan_steps(TrainConfig(epochs=3, decay_epochs=1, batch_size=2, max_steps=40, schedule="step"), images=9)
    assert (plan.steps_per_epoch, plan.scheduled_steps, plan.total_steps, plan.constant_steps) == (5, 20, 40, 30)
    assert plan.factor(30) == 1.0 and plan.factor(35) == pytest.approx(0.5) and plan.factor(40) == 0.0
    epochs = plan_steps(TrainConfig(epochs=1, decay_epochs=1, batch_size=1), images=4)
    assert epochs.total_steps == 8 and [epochs.factor(s) for s in (3, 4, 7)] == [1.0, pytest.approx(0.5), 0.5]


def test_skipped_files_are_reported_once():
    skipped = SkippedFiles()
    assert skipped.new({"skipped": ["a.png\nb.png", ""]}) == ["a.png", "b.png"]
    assert skipped.new({"skipped": ["b.png", "c.png"]}) == ["c.png"]
    assert skipped.seen == {"a.png", "b.png", "c.png"}


def test_nonfinite_budget_stops_after_its_limit():
    budget = NonFiniteBudget(limit=2)
    budget.record(NonFiniteLoss("g", float("nan")), "runs/x/latest.pt")
    budget.record(NonFiniteLoss("d", float("inf")), "runs/x/latest.pt")
    with pytest.raises(TrainingStopped, match=r"3 steps with non-finite losses .*runs/x/latest\.pt"):
        budget.record(NonFiniteLoss("g", float("nan")), "runs/x/latest.pt")


def test_best_score_follows_the_metric_direction():
    lower = BestScore(None)
    assert lower.improves(5.0)
    lower.update("rmse", 5.0, 10)
    assert lower.improves(4.0) and not lower.improves(6.0)
    assert lower.best == {"metric": "rmse", "value": 5.0, "step": 10}
    higher = BestScore({"metric": "psnr", "value": 20.0, "step": 3}, higher_is_better=True)
    assert higher.improves(21.0) and not higher.improves(19.0)


def test_time_budget_reads_its_clock():
    now = [100.0]
    budget = TimeBudget(1.5, clock=lambda: now[0])
    now[0] += 89
    assert not budget.spent()
    now[0] += 1
    assert budget.spent() and budget.minutes() == pytest.approx(1.5)
    assert not TimeBudget(None, clock=lambda: now[0]).spent()


def test_image_grid_sizes_columns_and_rows_by_their_largest_image():
    red, blue = Image.new("RGB", (4, 3), "red"), Image.new("RGB", (2, 5), "blue")
    grid = image_grid([[red, blue], [blue]])
    assert grid.size == (6, 10)
    assert grid.getpixel((0, 0)) == (255, 0, 0) and grid.getpixel((4, 0)) == (0, 0, 255)
    assert grid.getpixel((0, 5)) == (0, 0, 255) and grid.getpixel((5, 9)) == (255, 255, 255)


def test_same_size_batches_keep_order_and_split_on_size_and_count():
    sizes = [1, 1, 1, 2, 2, 1]
    groups = list(same_size_batches(range(6), lambda i: sizes[i], batch_size=2))
    assert groups == [[0, 1], [2], [3, 4], [5]]


def test_info_nce_is_the_cross_entropy_with_the_diagonal_as_positives():
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1) / 0.5, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert info_nce(logits, 0.5).item() == pytest.approx(expected.item(), rel=1e-12)
    assert info_nce(logits.bfloat16(), 0.5).dtype == torch.float32
    with pytest.raises(ValueError, match="temperature"):
        info_nce(logits, 0.0)


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    scalars = {"loss/g_gan": 0.5, "loss/d": 0.25, "lr": 1e-4}
    for terminal in (True, False):
        stream = _Stream(terminal)
        progress = Progress(total=4, initial=0, enabled=True, stream=stream)
        for step in (1, 2):
            progress.update()
            progress.show(step, scalars)
        progress.write("note: a note")
        progress.close()
        text = stream.getvalue()
        assert "note: a note\n" in text
        if terminal:
            assert "\r" in text and "g_gan=0.500" in text and "step 2/4" not in text
        else:  # a log file: one line per logged step, no carriage returns, no lr
            lines = [line for line in text.splitlines() if line.startswith("step ")]
            assert "\r" not in text and len(lines) == 2 and "lr" not in text
            assert lines[1].startswith("step 2/4  g_gan 0.500 d 0.250  ") and lines[1].endswith(" step/s")
    stream = _Stream(False)  # with the rate, the images/s and the projected finish on the clock
    progress = Progress(total=4, initial=0, enabled=True, stream=stream)
    with mock.patch("sesim.training.logging.datetime") as clock:
        clock.datetime.now.return_value = datetime.datetime(2026, 12, 4, 9, 30)
        clock.timedelta = datetime.timedelta
        progress.show(1, {**scalars, "images_per_s": 2.5, "eta_min": 45.0})
        progress.show(2, {**scalars, "images_per_s": 2.5, "eta_min": 3 * 24 * 60.0})
    first, second = [line for line in stream.getvalue().splitlines() if line.startswith("step ")]
    assert "img/s 2.5 done 10:15" in first and "done Mon 07 Dec 09:30" in second
    off = _Stream(False)
    progress = Progress(total=4, initial=0, enabled=False, stream=off)
    progress.update()
    progress.show(1, scalars)
    progress.write("warning: still shown")
    assert off.getvalue() == "warning: still shown\n"


def test_skipped_updates_are_read_in_one_go_and_name_their_step_loss_and_files():
    guarded = SkippedUpdates()
    guarded.add(1, ["discriminator", "generator"], torch.tensor([0.0, 0.0]), ["a.png"])
    guarded.add(2, ["discriminator", "generator"], torch.tensor([0.0, 1.0]), ["b.png", "c.png"])
    guarded.add(3, [], None, ["d.png"])  # no device guard (unfused optimizers): nothing to read
    (found,) = guarded.take()
    assert (found.step, found.loss, found.files) == (2, "generator", ["b.png", "c.png"])
    assert "non-finite generator loss" in str(found) and guarded.take() == []


def test_throughput_is_images_per_second_between_log_lines_and_the_minutes_left():
    clock = iter([0.0, 10.0, 20.0])
    speed = Throughput(batch_size=4, total_steps=1000, step=0)
    speed.since = (0, next(clock))
    with mock.patch("sesim.training.chores.time.perf_counter", lambda: next(clock)):
        assert speed.tick(100) == {"images_per_s": 40.0, "eta_min": 1.5}  # 900 steps at 10 per s
        assert speed.tick(100) == {}  # no step since: no rate
