"""A training step a GPU can run as one graph: no host sync in any method's step, few kernels,
learning rates the scheduler fills in place, and the switch that captures it (the capture itself
runs on a GPU: tests/test_device.py with SESIM_TEST_DEVICE=cuda)."""

import sys
from pathlib import Path

import pytest
import torch

from sesim.config import load_config
from sesim.errors import ConfigError
from sesim.training.graphs import graph_support, learning_rates_on_device, use_cuda_graphs
from sesim.training.loop import build_method
from sesim.training.state import portable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from op_count import count_step

CPU = torch.device("cpu")


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset", ["fsesim", "lsesim", "cut", "fastcut", "cyclegan", "gan-only", "perceptual", "sinsesim", "multimodal"]
)
def test_no_method_step_waits_for_the_host(preset):
    """``aten._local_scalar_dense`` (``.item()``, ``bool(tensor)``), ``nonzero``, copies to the CPU:
    each makes the host wait for the GPU mid-step, and none may happen in a step."""
    counted = count_step(preset, "fp32", size=64)
    assert counted["ops"] > 100 and counted["host_syncs"] == {}, counted["host_syncs"]


@pytest.mark.parametrize(("preset", "most"), [("fsesim", 480), ("lsesim", 800)])
def test_a_step_dispatches_at_most_the_targeted_kernels(preset, most):
    """The launches of one step with the preset's defaults (views and allocations aside), counted
    on the CPU: 724 (FSeSim) and 1448 (LSeSim) before the fused losses and out-of-place activations."""
    assert count_step(preset, "fp32", size=64)["ops"] <= most


def method(preset="fsesim", *extra):
    return build_method(load_config(preset, ["loss.backbone_weights=random", *extra]), CPU)


def test_the_graph_switch_says_where_it_cannot_capture():
    fsesim = method()
    assert "CUDA device" in graph_support(fsesim, CPU, 1)
    assert not use_cuda_graphs("auto", fsesim, CPU, 1)  # auto: quietly eager here
    assert not use_cuda_graphs("off", fsesim, CPU, 1)
    with pytest.raises(ConfigError, match=r"train\.cuda_graphs=on: the step cannot be captured: it needs a CUDA"):
        use_cuda_graphs("on", fsesim, CPU, 1)
    cuda = torch.device("cuda")  # the reasons after the device's, without one
    assert "one process" in graph_support(fsesim, cuda, 2)
    assert "flip equivariance" in graph_support(method("fastcut"), cuda, 1)
    assert "CycleGAN" in graph_support(method("cyclegan"), cuda, 1)
    assert graph_support(fsesim, cuda, 1) is None


def test_learning_rates_become_tensors_the_scheduler_fills_and_checkpoints_keep_floats():
    lsesim = method("lsesim")
    optimizers = lsesim.optimizers
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers["generator"], lambda step: 1.0 / (step + 1))
    learning_rates_on_device(optimizers, CPU)
    lr = optimizers["generator"].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and optimizers["generator"].param_groups[0]["capturable"]
    scheduler.step()
    assert optimizers["generator"].param_groups[0]["lr"] is lr  # filled in place: a graph keeps reading it
    assert lr.item() == pytest.approx(1e-4 / 2)
    state = portable(optimizers["generator"].state_dict())
    assert state["param_groups"][0]["lr"] == pytest.approx(5e-5) and not state["param_groups"][0]["capturable"]
    assert isinstance(optimizers["generator"].param_groups[0]["lr"], torch.Tensor)  # the live one untouched


def test_off_and_on_are_words_in_a_set_flag():
    """YAML reads a bare off / on as a boolean: ``--set train.compile=off`` used to be refused."""
    config = load_config("fsesim", ["train.compile=off", "train.cuda_graphs=off"])
    assert config.train.compile == "off" and config.train.cuda_graphs == "off"
    assert load_config("fsesim", ["train.cuda_graphs=on"]).train.cuda_graphs == "on"
