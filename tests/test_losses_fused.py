"""The fused form of the spatial losses (all taps at once) equals the readable one, value and gradient."""

import pytest
import torch

from sesim.losses import (
    SpatialCorrelativeLoss,
    contrastive_spatial_loss,
    sample_query_ids,
    spatial_correlative_loss,
)
from sesim.losses.fused import contrastive_spatial_loss_taps, spatial_correlative_loss_taps

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels

# Three taps, two of one shape (VGG16's relu4_1 and relu4_3 are stacked together), non-square maps.
SHAPES = [(2, 16, 12, 10), (2, 32, 6, 5), (2, 32, 6, 5)]
SETTINGS = [(window, normalize, mode) for window in (None, 4) for normalize in (False, True) for mode in ("cos", "l1")]


def tensors(seed, shapes=SHAPES, grad=False, batch_factor=1):
    rng = torch.Generator().manual_seed(seed)
    return [
        torch.randn((s[0] * batch_factor, *s[1:]), generator=rng, dtype=torch.float64).requires_grad_(grad)
        for s in shapes
    ]


def query_ids(seed, shapes=SHAPES, n=20):
    rng = torch.Generator().manual_seed(seed)
    return [sample_query_ids(s[2], s[3], n, generator=rng) for s in shapes]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("window,normalize,mode", SETTINGS)
def test_structure_loss_of_all_taps_equals_the_mean_of_the_readable_ones(window, normalize, mode):
    sources, targets, ids = tensors(0), tensors(1, grad=True), query_ids(2)
    readable = torch.stack(
        [spatial_correlative_loss(*args, window, normalize, mode) for args in zip(sources, targets, ids, strict=True)]
    ).mean()
    fused = spatial_correlative_loss_taps(sources, targets, ids, window, normalize, mode)
    assert fused.item() == pytest.approx(readable.item(), rel=1e-12)
    expected = torch.autograd.grad(readable, targets)
    got = torch.autograd.grad(fused, targets)
    assert max(rel_err(g, e) for g, e in zip(got, expected, strict=True)) < 1e-12


@pytest.mark.parametrize("window,normalize", [(None, False), (4, False), (None, True), (4, True)])
def test_contrastive_loss_of_all_taps_equals_the_mean_of_the_readable_ones(window, normalize):
    views, ids = tensors(3, grad=True, batch_factor=3), query_ids(4)
    readable = torch.stack(
        [contrastive_spatial_loss(*v.chunk(3), i, window, normalize) for v, i in zip(views, ids, strict=True)]
    ).mean()
    fused = contrastive_spatial_loss_taps(views, ids, window, normalize)
    assert fused.item() == pytest.approx(readable.item(), rel=1e-12)
    expected, got = torch.autograd.grad(readable, views), torch.autograd.grad(fused, views)
    assert max(rel_err(g, e) for g, e in zip(got, expected, strict=True)) < 1e-12


def test_golden_values_through_the_fused_form(golden):
    """The authors' values (one tap: no stacking partner) through the fused functions."""
    for attn, window in (("local", 5), ("global", None)):
        for norm in (0, 1):
            for mode in ("cos", "l1"):
                loss = spatial_correlative_loss_taps(
                    [golden["feat_src"]], [golden["feat_tgt"]], [golden["patch_ids"]], window, bool(norm), mode
                )
                assert loss.item() == pytest.approx(golden[f"loss_{mode}_{attn}_norm{norm}"].item(), rel=1e-9)
            views = torch.cat([golden["feat_src"], golden["feat_tgt"], golden["feat_other"]])
            nce = contrastive_spatial_loss_taps([views], [golden["patch_ids"]], window, bool(norm), 0.07)
            assert nce.item() == pytest.approx(golden[f"loss_nce_{attn}_norm{norm}"].item(), rel=1e-9)


def test_the_source_takes_no_gradient_and_identical_maps_give_zero():
    features = tensors(5)
    target = [f.clone().requires_grad_() for f in features]
    source = [f.clone().requires_grad_() for f in features]
    loss = spatial_correlative_loss_taps(source, target, query_ids(6))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert all(s.grad is None for s in source)


def test_fused_loss_ignores_autocast():
    """Inside a bf16 autocast region the maps and the loss stay float32, as the readable form's."""
    sources, targets = tensors(7), tensors(8)
    sources, targets = [s.float() for s in sources], [t.float() for t in targets]
    ids = query_ids(9)
    plain = spatial_correlative_loss_taps(sources, targets, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = spatial_correlative_loss_taps(sources, targets, ids)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


@pytest.mark.parametrize("heads", [False, True])
def test_the_module_gives_the_same_loss_fused_or_tap_by_tap(heads):
    torch.manual_seed(0)
    loss_fn = SpatialCorrelativeLoss("vgg16", ("relu2_1", "relu3_1", "relu3_2"), weights="random", heads=heads)
    loss_fn = loss_fn.double()
    images = torch.rand(3, 2, 3, 48, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    results = []
    for fused in (True, False):
        loss_fn.fused = fused
        fake = images[1].clone().requires_grad_()
        value = loss_fn(images[0], fake, torch.Generator().manual_seed(2))
        (grad,) = torch.autograd.grad(value, fake)
        nce = loss_fn.contrastive(*images, torch.Generator().manual_seed(3)) if heads else value
        results.append((value.item(), grad, nce.item()))
    (value, grad, nce), (value_ref, grad_ref, nce_ref) = results
    assert value == pytest.approx(value_ref, rel=1e-12) and nce == pytest.approx(nce_ref, rel=1e-12)
    assert rel_err(grad, grad_ref) < 1e-10
