"""SpatialCorrelativeLoss (Module API) and SimilarityHeads."""

import pytest
import torch

from sesim.backbones import build_backbone
from sesim.losses import SpatialCorrelativeLoss, contrastive_spatial_loss, sample_query_ids, spatial_correlative_loss
from sesim.networks import SimilarityHeads

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels

TAPS = ("relu2_1", "relu3_1")


@pytest.fixture(scope="module")
def vgg():
    return build_backbone("vgg16", weights="random")


def images(seed, shape=(2, 3, 32, 32)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def functional_twin(loss_fn, source, translated, seed, heads=None):
    gen = torch.Generator().manual_seed(seed)
    fs, ft = loss_fn.backbone(source, TAPS), loss_fn.backbone(translated, TAPS)
    values = []
    for tap in TAPS:
        a, b = fs[tap], ft[tap]
        if heads is not None:
            a, b = heads(tap, a), heads(tap, b)
        ids = sample_query_ids(a.shape[2], a.shape[3], 20, generator=gen)
        values.append(spatial_correlative_loss(a, b, ids, 4, False, "cos"))
    return torch.stack(values).mean()


@pytest.mark.parametrize("with_heads", [False, True])
def test_module_equals_functional_on_same_ids(vgg, with_heads):
    loss_fn = SpatialCorrelativeLoss(vgg, TAPS, window=4, num_queries=20, heads=with_heads)
    src, fake = images(0), images(1)
    got = loss_fn(src, fake, generator=torch.Generator().manual_seed(7))
    expected = functional_twin(loss_fn, src, fake, 7, loss_fn.heads)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fresh_queries_per_call_and_reproducible_with_generator(vgg):
    loss_fn = SpatialCorrelativeLoss(vgg, TAPS, num_queries=8)
    src, fake = images(0), images(1)
    first = loss_fn(src, fake, torch.Generator().manual_seed(3))
    assert torch.equal(first, loss_fn(src, fake, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, loss_fn(src, fake, torch.Generator().manual_seed(4)))


def test_gradient_reaches_translation_not_source_or_backbone(vgg):
    loss_fn = SpatialCorrelativeLoss(vgg, TAPS, num_queries=16)
    src, fake = images(0).requires_grad_(), images(1).requires_grad_()
    loss_fn(src, fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert src.grad is None
    assert all(p.grad is None for p in vgg.parameters())


def test_contrastive_trains_only_heads(vgg):
    loss_fn = SpatialCorrelativeLoss(vgg, TAPS, window=4, num_queries=16, heads=True)
    a, b, c = images(0), images(1), images(2)
    loss = loss_fn.contrastive(a, b, c, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in loss_fn.heads.parameters())
    assert all(p.grad is None for p in vgg.parameters())
    # Same ids -> the per-tap functional form.
    gen = torch.Generator().manual_seed(0)
    feats = vgg(torch.cat([a, b, c]), TAPS)
    values = []
    for tap in TAPS:
        s, t, o = loss_fn.heads(tap, feats[tap]).chunk(3)
        ids = sample_query_ids(s.shape[2], s.shape[3], 16, generator=gen)
        values.append(contrastive_spatial_loss(s, t, o, ids, 4))
    assert loss.item() == pytest.approx(torch.stack(values).mean().item(), rel=1e-6)


def test_heads_shapes_and_init():
    heads = SimilarityHeads({"relu3_1": 256, "small": 64})
    first, second = heads.heads["relu3_1"][0], heads.heads["relu3_1"][2]
    assert (first.in_channels, first.out_channels, second.out_channels) == (256, 64, 64)
    assert heads.heads["small"][0].out_channels == 32  # max(32, 64 // 4)
    assert torch.all(first.bias == 0) and 0.015 < first.weight.std().item() < 0.025
    assert heads("small", torch.randn(1, 64, 5, 7)).shape == (1, 32, 5, 7)
    with pytest.raises(ValueError, match="no head for tap 'x'"):
        heads("x", torch.randn(1, 64, 5, 7))


def test_module_bad_input(vgg):
    with pytest.raises(ValueError, match="valid taps"):
        SpatialCorrelativeLoss(vgg, ("relu3_1", "pool9"))
    with pytest.raises(ValueError, match="valid backbones"):
        SpatialCorrelativeLoss("alexnet")
    with pytest.raises(ValueError, match="window"):
        SpatialCorrelativeLoss(vgg, TAPS, window=0)
    with pytest.raises(ValueError, match="no head for tap"):
        SpatialCorrelativeLoss(vgg, TAPS, heads=SimilarityHeads({"relu2_1": 128}))
    loss_fn = SpatialCorrelativeLoss(vgg, TAPS)
    with pytest.raises(ValueError, match="differ in shape"):
        loss_fn(images(0), images(1, (2, 3, 16, 16)))
    with pytest.raises(ValueError, match="heads=True"):
        loss_fn.contrastive(images(0), images(1), images(2))
