"""What must hold on the device users train on: ``SESIM_TEST_DEVICE=cuda python -m pytest
tests/test_device.py`` runs these on a GPU (``benchmarks/gpu_checks.sh`` does); by default they run
on the CPU, so the tests themselves are exercised everywhere. Asked for a CUDA device where there
is none, every test skips and says so.

Tolerances against the CPU float64 reference: float32 1e-4 (TF32 off), bfloat16 / float16 a few
per cent (8 / 11 mantissa bits through reductions over thousands of entries).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from sesim.checkpoint import load_checkpoint
from sesim.cli import main
from sesim.errors import ConfigError
from sesim.inference import load_generator
from sesim.inference.export import export_generator, run_exported
from sesim.inference.tiling import translate_tiled
from sesim.inference.translate import translate_tensor
from sesim.losses import SpatialCorrelativeLoss, contrastive_spatial_loss, sample_query_ids, spatial_correlative_loss
from sesim.training.loop import train
from tests.helpers import TINY, tiny_config, tiny_data

pytestmark = [pytest.mark.device, pytest.mark.numerics]  # float comparisons: CI re-runs them with AVX2 kernels
NAME = os.environ.get("SESIM_TEST_DEVICE", "cpu")
CUDA = NAME.startswith("cuda")
SMALL_NCE = "loss.patchnce.taps=[input,down1,block1]"


@pytest.fixture(scope="module")
def device():
    if CUDA and not torch.cuda.is_available():
        pytest.skip(f"SESIM_TEST_DEVICE={NAME}: needs a CUDA device, and there is none here")
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    return torch.device(NAME)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


def on(device, *extra):
    return (f"train.device={device}", *extra)


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if '"loss/g"' in line]


TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2, torch.float64: 1e-9}


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_loss_on_the_device_matches_cpu_float64(device, dtype):
    gen = torch.Generator().manual_seed(6)
    src, tgt, other = torch.randn(3, 2, 16, 24, 20, generator=gen, dtype=torch.float64)
    ids = sample_query_ids(24, 20, 64, generator=gen)
    rel = TOLERANCE[dtype]
    for window in (None, 7):
        target = tgt.clone().requires_grad_()
        reference = spatial_correlative_loss(src, target, ids, window)
        (grad_reference,) = torch.autograd.grad(reference, target)
        on_device = tgt.to(device, dtype).requires_grad_()
        value = spatial_correlative_loss(src.to(device, dtype), on_device, ids.to(device), window)
        (grad,) = torch.autograd.grad(value, on_device)
        assert value.dtype == (torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype)
        assert value.item() == pytest.approx(reference.item(), rel=rel)
        scale = grad_reference.abs().max().item()
        assert (grad.double().cpu() - grad_reference).abs().max().item() < 10 * rel * scale
        nce = contrastive_spatial_loss(
            src.to(device, dtype), on_device, other.to(device, dtype), ids.to(device), window
        )
        assert nce.item() == pytest.approx(contrastive_spatial_loss(src, tgt, other, ids, window).item(), rel=rel)


def test_module_on_the_device_matches_cpu(device):
    structure = SpatialCorrelativeLoss("efficientnet_lite0", taps=("stage2", "stage3"), window=None)
    images = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cpu = structure(images[0], images[1], torch.Generator().manual_seed(0))
    moved = structure.to(device)
    fake = images[1].to(device).requires_grad_()
    value = moved(images[0].to(device), fake, torch.Generator(device=device).manual_seed(0))
    value.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    if device.type == "cpu":
        assert value.item() == pytest.approx(cpu.item(), rel=1e-6)
    else:  # the device's own query positions: same distribution, other draws
        assert 0.2 < value.item() / cpu.item() < 5


@pytest.mark.parametrize("preset", ["fsesim", "lsesim", "cut", "fastcut", "cyclegan", "gan-only", "perceptual"])
def test_every_method_trains_on_the_device(device, data, tmp_path, preset):
    run_dir = train(tiny_config(preset, data, tmp_path, *on(device, "train.max_steps=2", SMALL_NCE)))
    records = losses(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for r in records for k, v in r.items() if k.startswith("loss/"))


# Each switch against the plain fp32 contiguous eager step, everything else the same.
PLAIN = ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=off")
SWITCHES = {
    "bf16": ("train.precision=bf16", "train.channels_last=false", "train.cuda_graphs=off"),
    "channels-last": ("train.precision=fp32", "train.channels_last=true", "train.cuda_graphs=off"),
    **(
        {
            "compile": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=off",
                        "train.compile=default"),
            "cuda-graphs": ("train.precision=fp32", "train.channels_last=false", "train.cuda_graphs=on"),
            "reduce-overhead": ("train.precision=fp32", "train.channels_last=false", "train.compile=reduce-overhead"),
        }
        if CUDA
        else {}
    ),
}  # fmt: skip


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_speed_switches_on_the_device_track_fp32(device, data, tmp_path, switch):
    """Step 1's heads and D losses come before any update: only the arithmetic differs. Later losses
    follow Adam's first steps, lr * sign(gradient), which a rounding-level difference can flip for a
    gradient near zero, so they are held to the same ballpark only. Five steps: past the graph's
    three eager warm-up steps, so replays are among them."""
    plain = train(tiny_config("lsesim", data, tmp_path / "a", *on(device, "train.max_steps=5"), *PLAIN))
    fast = train(tiny_config("lsesim", data, tmp_path / "b", *on(device, "train.max_steps=5"), *SWITCHES[switch]))
    first, other = losses(plain), losses(fast)
    rel = 0.05 if switch == "bf16" else 1e-3
    for key in ("loss/heads", "loss/d"):
        assert other[0][key] == pytest.approx(first[0][key], rel=rel, abs=1e-4), key
    assert len(other) == len(first) == 5
    for x, y in list(zip(first, other, strict=True))[: 3 if switch == "bf16" else 5]:  # bf16 drifts sooner
        for key in ("loss/heads", "loss/d", "loss/g_gan", "loss/structure"):
            assert y[key] == pytest.approx(x[key], rel=0.1, abs=1e-2), (x["step"], key)


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need SESIM_TEST_DEVICE=cuda and a CUDA device")
@pytest.mark.parametrize("preset", ["fsesim", "lsesim"])
def test_the_graph_step_equals_the_eager_step(device, data, tmp_path, preset):
    """With deterministic algorithms the captured step replays the eager step's kernels: the same
    losses and the same weights after 6 steps (3 eager, the capture, 3 replays)."""
    settings = on(device, "train.max_steps=6", "train.deterministic=true", "train.precision=fp32",
                  "train.channels_last=false", "log.checkpoint_every=100")  # fmt: skip
    eager = train(tiny_config(preset, data, tmp_path / "a", *settings, "train.cuda_graphs=off"))
    graph = train(tiny_config(preset, data, tmp_path / "b", *settings, "train.cuda_graphs=on"))
    assert [r["step"] for r in losses(graph)] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(losses(eager), losses(graph), strict=True):
        for key in (k for k in x if k.startswith("loss/")):
            assert y[key] == pytest.approx(x[key], rel=1e-6, abs=1e-7), (x["step"], key)
    a, b = load_checkpoint(eager), load_checkpoint(graph)
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.allclose(value, b["networks"][net][key], rtol=1e-5, atol=1e-7), f"{net}.{key}"


def assert_resume_is_exact(data, tmp_path, settings, stop_at):
    """A run stopped at ``stop_at`` and resumed ends with the weights of the run that never stopped."""
    straight = train(tiny_config("lsesim", data, tmp_path / "a", *settings, "log.checkpoint_every=100"))
    stopped = train(tiny_config("lsesim", data, tmp_path / "b", *settings, f"log.checkpoint_every={stop_at}"))
    checkpoints = stopped / "checkpoints"
    (checkpoints / "latest.pt").unlink()
    (checkpoints / "latest.pt").write_bytes((checkpoints / f"step_{stop_at:07d}.pt").read_bytes())
    train(None, resume=stopped)
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert a["step"] == b["step"] == 2 * stop_at
    for net in a["networks"]:
        for key, value in a["networks"][net].items():
            assert torch.equal(value, b["networks"][net][key]), f"{net}.{key}"


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need SESIM_TEST_DEVICE=cuda and a CUDA device")
def test_resume_is_exact_across_the_graph_step(device, data, tmp_path):
    """Stopped at step 4 (after the capture) and resumed (3 eager warm-up steps again, then a new
    capture): the same weights as 8 steps without a stop."""
    settings = on(device, "train.max_steps=8", "train.deterministic=true", "train.precision=fp32",
                  "train.channels_last=false", "train.cuda_graphs=on")  # fmt: skip
    assert_resume_is_exact(data, tmp_path, settings, stop_at=4)


def test_cuda_graphs_on_where_the_step_cannot_be_captured_is_a_clear_error(device, data, tmp_path):
    config = tiny_config("fastcut", data, tmp_path, *on(device, "train.max_steps=1", "train.cuda_graphs=on", SMALL_NCE))
    with pytest.raises(ConfigError, match=r"train\.cuda_graphs=on: the step cannot be captured"):
        train(config)
    assert not list(tmp_path.glob("*-fastcut"))  # no run folder left behind


def test_resume_is_exact_on_the_device_with_deterministic_algorithms(device, data, tmp_path):
    settings = on(device, "train.max_steps=4", "train.deterministic=true", "train.precision=fp32")
    assert_resume_is_exact(data, tmp_path, settings, stop_at=2)


def test_translate_on_the_device_any_size_bf16_and_tiled(device, data, tmp_path):
    run_dir = train(tiny_config("fsesim", data, tmp_path, *on(device, "train.max_steps=1")))
    generator, _ = load_generator(run_dir / "checkpoints" / "latest.pt", device)
    cpu_generator, _ = load_generator(run_dir / "checkpoints" / "latest.pt")
    images = torch.rand(2, 3, 45, 71, generator=torch.Generator().manual_seed(2)) * 2 - 1
    reference = translate_tensor(cpu_generator, images)
    full = translate_tensor(generator, images.to(device)).cpu()
    half = translate_tensor(generator, images.to(device), autocast=torch.bfloat16).cpu()
    assert full.shape == half.shape == images.shape and half.dtype == torch.float32
    assert (full - reference).abs().max() < 1e-4 and (half - reference).abs().max() < 0.1
    padded = torch.nn.functional.pad(images[:1].to(device), (0, 1, 0, 3), mode="reflect")  # 48x72
    tiled = translate_tiled(generator, padded, tile=32)
    assert tiled.shape == padded.shape and torch.isfinite(tiled).all()
    image = tmp_path / "odd.png"
    Image.new("RGB", (45, 31), (90, 140, 200)).save(image)
    assert main(["translate", str(run_dir), str(image), str(tmp_path / "out.png"), "--device", str(device),
                 "--precision", "bf16" if CUDA else "fp32"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "out.png").size == (45, 31)


def test_export_runs_like_the_device_generator(device, data, tmp_path):
    run_dir = train(tiny_config("fsesim", data, tmp_path, *on(device, "train.max_steps=1")))
    assert export_generator(run_dir, tmp_path / "g.onnx") < 1e-4
    generator, _ = load_generator(run_dir / "checkpoints" / "latest.pt", device)
    images = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(3)) * 2 - 1
    on_device = translate_tensor(generator, images.to(device)).cpu()
    assert (run_exported(tmp_path / "g.onnx", images) - on_device).abs().max() < 1e-3  # onnxruntime's CPU provider


def test_validation_on_the_device(device, data, tmp_path):
    settings = ("validation.every=1", f"validation.folder_a={data / 'testA'}", f"validation.folder_b={data / 'testB'}",
                "validation.metric=rmse", "validation.size=32")  # fmt: skip
    run_dir = train(tiny_config("fsesim", data, tmp_path, *on(device, "train.max_steps=2"), *settings))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val/rmse" in r] == [1, 2]
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_two_processes_share_one_device(device, data, tmp_path):
    """A 2-process DDP step on one card (gloo: NCCL cannot put two ranks on one GPU)."""
    overrides = [*TINY, f"data.root={data}", f"log.out_dir={tmp_path}", "train.max_steps=2", "train.batch_size=4",
                 f"train.device={'cuda' if CUDA else 'cpu'}", "train.pool_size=0", "loss.augment=false"]  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [
        *launcher,
        "-m",
        "sesim.cli",
        "--debug",
        "train",
        "lsesim",
        *[a for o in overrides for a in ("--set", o)],
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SESIM_DIST_BACKEND": "gloo"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert [r["step"] for r in losses(run_dir)] == [1, 2]
    assert len(load_checkpoint(run_dir)["processes"]) == 2
