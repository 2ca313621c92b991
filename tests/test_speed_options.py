"""The speed switches change how a step runs, not what it computes: bf16 autocast, channels-last,
torch.compile, fused Adam, the decoded-image cache."""

import json
from pathlib import Path

import pytest
import torch

from sesim.checkpoint import load_checkpoint
from sesim.data.unpaired import UnpairedImages
from sesim.errors import DataError
from sesim.inference import load_generator, resolve_precision
from sesim.losses import sample_query_ids, spatial_correlative_loss
from sesim.methods import OneSidedTranslation
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{key: value for key, value in record.items() if key != "time"} for record in records]


def close_runs(a, b, rel, steps=None, tiny=1e-4):
    for x, y in zip(losses(a)[:steps], losses(b)[:steps], strict=True):
        for key in ("loss/d", "loss/g_gan", "loss/structure"):
            assert y[key] == pytest.approx(x[key], rel=rel, abs=tiny), (x["step"], key)


def test_precision_auto_is_bf16_on_cuda_only():
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16


def test_structure_loss_ignores_autocast():
    """Inside a bf16 autocast region the maps and the loss stay float32 (same value as outside)."""
    source, target = torch.randn(2, 2, 16, 12, 10)
    ids = sample_query_ids(12, 10, 32, generator=torch.Generator().manual_seed(0))
    plain = spatial_correlative_loss(source, target, ids, window=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = spatial_correlative_loss(source, target, ids, window=5)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


def test_bf16_training_tracks_fp32(tmp_path, data):
    fp32 = train(tiny_config("lsesim", data, tmp_path / "a", "train.max_steps=3", "train.precision=fp32"))
    bf16 = train(tiny_config("lsesim", data, tmp_path / "b", "train.max_steps=3", "train.precision=bf16"))
    # Same weights at step 1: only the arithmetic differs (a few hundred steps: benchmarks/precision.py).
    close_runs(fp32, bf16, rel=0.03, steps=1)
    assert losses(fp32) != losses(bf16)  # bf16 really ran


def test_channels_last_is_the_same_computation(tmp_path, data):
    # float64: the layouts pick other convolution kernels, and in float32 Adam's first steps turn
    # their rounding into lr-sized weight differences (see tests/test_distributed.py).
    fp64 = ("train.max_steps=3", "train.precision=fp64")
    a = train(tiny_config("fsesim", data, tmp_path / "a", *fp64, "train.channels_last=true"))
    b = train(tiny_config("fsesim", data, tmp_path / "b", *fp64, "train.channels_last=false"))
    close_runs(a, b, rel=1e-9, tiny=1e-12)


def test_fp64_reference_run_is_float64_throughout(tmp_path, data):
    fp32 = train(tiny_config("lsesim", data, tmp_path / "a", "train.max_steps=2", "train.precision=fp32"))
    fp64 = train(tiny_config("lsesim", data, tmp_path / "b", "train.max_steps=2", "train.precision=fp64"))
    document = load_checkpoint(fp64 / "checkpoints" / "latest.pt")
    weights = [t for net in document["networks"].values() for t in net.values() if t.is_floating_point()]
    assert weights and all(t.dtype == torch.float64 for t in weights)
    close_runs(fp32, fp64, rel=1e-5, steps=1)  # same start, float32 rounding only
    generator, _ = load_generator(fp64 / "checkpoints" / "latest.pt")  # translates in float32
    assert generator(torch.zeros(1, 3, 32, 32)).dtype == torch.float32


def test_compiled_step_matches_eager(tmp_path, data):
    eager = train(tiny_config("fsesim", data, tmp_path / "a", "train.max_steps=2"))
    compiled = train(tiny_config("fsesim", data, tmp_path / "b", "train.max_steps=2", "train.compile=default"))
    # Step 1 runs on identical weights; later steps inherit Adam's amplification of tiny differences.
    close_runs(eager, compiled, rel=1e-3, steps=1)
    close_runs(eager, compiled, rel=0.1)


def test_adam_is_fused():
    config = tiny_config("lsesim", Path("unused"), Path("unused"))
    method = OneSidedTranslation(config.model.generator, config.model.discriminator, config.loss, config.weights)
    assert all(optimizer.defaults["fused"] for optimizer in method.optimizers.values())


def test_image_cache_serves_decoded_images(data):
    plain = UnpairedImages(data / "trainA", data / "trainB", seed=3, load_size=36, crop_size=32)
    cached = UnpairedImages(data / "trainA", data / "trainB", seed=3, load_size=36, crop_size=32, cache=True)
    first = [cached[i]["a"] for i in range(len(cached))]
    assert len(cached.cache) == len(cached.files_a) + len(cached.files_b)
    assert all(torch.equal(first[i], plain[i]["a"]) for i in range(len(plain)))
    expected = plain[len(plain) + 1]  # the next epoch: another order and crop of the same files
    # Served from memory: with the files gone, only the cached dataset can still answer.
    for path in cached.cache:
        path.rename(path.with_suffix(".moved"))
    try:
        with pytest.raises(DataError):
            plain[len(plain) + 1]
        again = cached[len(cached) + 1]
        assert torch.equal(again["a"], expected["a"]) and torch.equal(again["b"], expected["b"])
    finally:
        for path in cached.cache:
            path.with_suffix(".moved").rename(path)


def test_translate_in_bf16_is_close_to_fp32():
    from sesim.inference.translate import translate_tensor
    from sesim.networks import ResnetGenerator

    generator = ResnetGenerator(ngf=8, blocks=1).eval()
    images = torch.rand(2, 3, 30, 42, generator=torch.Generator().manual_seed(0)) * 2 - 1
    full = translate_tensor(generator, images)
    half = translate_tensor(generator, images, autocast=torch.bfloat16)
    assert half.dtype == torch.float32 and half.shape == full.shape == images.shape
    assert 0 < (half - full).abs().max() < 0.05


def test_the_upsampling_pad_is_the_same_replicate_pad_eager_or_compiled():
    """BlurUpsample pads with F.pad in eager mode and with concatenations under torch.compile
    (pytorch#179442): the same values and gradients, and padding 3 equals padding 2 and a crop."""
    import torch.nn.functional as F

    from sesim.networks.layers import BlurUpsample

    layer = BlurUpsample(3).double()
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    padded = torch.cat([x[:, :, :1], x, x[:, :, -1:]], dim=2)
    padded = torch.cat([padded[..., :1], padded, padded[..., -1:]], dim=3)
    reference = F.conv_transpose2d(padded, layer.kernel, stride=2, padding=2, groups=3)[:, :, 1:-1, 1:-1]
    out = layer(x)
    assert out.shape == (2, 3, 10, 14) and torch.allclose(out, reference, rtol=0, atol=1e-12)
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), x)
    assert torch.allclose(grad, grad_reference, rtol=0, atol=1e-12)
