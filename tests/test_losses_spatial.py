"""The spatially-correlative loss: golden parity, a slow reference, properties, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from sesim.losses import (
    contrastive_spatial_loss,
    sample_query_ids,
    self_similarity,
    spatial_correlative_loss,
    window_key_ids,
)
from sesim.losses.spatial import top_quarter_mask

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels

CASES = [("local", 5), ("global", None)]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


# ---------------------------------------------------------------- golden values (authors' code)
@pytest.mark.parametrize("attn,window", CASES)
@pytest.mark.parametrize("norm", [0, 1])
def test_golden_similarity_maps(golden, attn, window, norm):
    sim = self_similarity(golden["feat_src"], golden["patch_ids"], window, bool(norm))
    expected = golden[f"simmap_src_{attn}_norm{norm}"]
    assert sim.shape == expected.shape and sim.dtype == torch.float64
    assert rel_err(sim, expected) < 1e-9


@pytest.mark.parametrize("attn,window", CASES)
@pytest.mark.parametrize("norm", [0, 1])
@pytest.mark.parametrize("mode", ["cos", "l1"])
def test_golden_structure_losses(golden, attn, window, norm, mode):
    loss = spatial_correlative_loss(
        golden["feat_src"], golden["feat_tgt"], golden["patch_ids"], window, bool(norm), mode
    )
    assert loss.item() == pytest.approx(golden[f"loss_{mode}_{attn}_norm{norm}"].item(), rel=1e-9)


@pytest.mark.parametrize("attn,window", CASES)
@pytest.mark.parametrize("norm", [0, 1])
def test_golden_contrastive_losses(golden, attn, window, norm):
    loss = contrastive_spatial_loss(
        golden["feat_src"], golden["feat_tgt"], golden["feat_other"], golden["patch_ids"], window, bool(norm), 0.07
    )
    assert loss.item() == pytest.approx(golden[f"loss_nce_{attn}_norm{norm}"].item(), rel=1e-9)


def test_golden_with_heads(golden):
    from sesim.networks import SimilarityHeads

    heads = SimilarityHeads({"tap": 16}).double()
    with torch.no_grad():
        heads.heads["tap"][0].weight.copy_(golden["head_conv0_weight"])
        heads.heads["tap"][0].bias.copy_(golden["head_conv0_bias"])
        heads.heads["tap"][2].weight.copy_(golden["head_conv2_weight"])
        heads.heads["tap"][2].bias.copy_(golden["head_conv2_bias"])
    loss = spatial_correlative_loss(
        heads("tap", golden["feat_src"]), heads("tap", golden["feat_tgt"]), golden["patch_ids"], 5, False, "cos"
    )
    assert loss.item() == pytest.approx(golden["loss_cos_local_norm0_with_heads"].item(), rel=1e-9)


# ---------------------------------------------------------------- slow, obviously-correct reference
def reference_maps(feat, ids, window, normalize):
    """Straight from the reference document, one query at a time, explicit rows and columns."""
    b, c, h, w = feat.shape
    feat = feat - feat.mean(dim=(2, 3), keepdim=True)
    feat = F.normalize(feat, dim=1) if normalize else feat / math.sqrt(c)
    rows = []
    for q in ids.tolist():
        r, col = divmod(q, w)
        query = feat[:, :, r, col]  # (B, C)
        if window is None or not (window < h and window < w):
            keys = feat.reshape(b, c, h * w)
        else:
            top = min(max(r - window // 2, 0), h - window)
            left = min(max(col - window // 2, 0), w - window)
            keys = feat[:, :, top : top + window, left : left + window].reshape(b, c, window * window)
        rows.append(torch.einsum("bc,bck->bk", query, keys))
    sim = torch.stack(rows, dim=1)
    return sim if normalize else torch.tanh(sim / 10)


def reference_loss(a, b, normalize, mode):
    k = b.shape[-1]
    num = k // 4
    threshold = b.sort(dim=-1, descending=True).values[..., num : num + 1]
    a = torch.where(b < threshold, torch.zeros_like(a), a)
    b = torch.where(b < threshold, torch.zeros_like(b), b)
    rho = (lambda x: x.abs()) if normalize else (lambda x: torch.where(x.abs() < 1, 0.5 * x**2, x.abs() - 0.5))
    if mode == "cos":
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        return rho(1 - cos).mean()
    return rho((k / num) * a - (k / num) * b).mean()


@pytest.mark.parametrize("height,width", [(12, 20), (20, 12), (7, 9)])
@pytest.mark.parametrize("window", [5, 3, None, 12])
@pytest.mark.parametrize("normalize", [False, True])
def test_non_square_maps_match_reference(height, width, window, normalize):
    gen = torch.Generator().manual_seed(height * 100 + width)
    src = torch.randn(2, 6, height, width, generator=gen, dtype=torch.float64)
    tgt = torch.randn(2, 6, height, width, generator=gen, dtype=torch.float64)
    ids = sample_query_ids(height, width, 30, generator=gen)
    a = self_similarity(src, ids, window, normalize)
    assert torch.allclose(a, reference_maps(src, ids, window, normalize), rtol=1e-12, atol=1e-14)
    b = reference_maps(tgt, ids, window, normalize)
    for mode in ("cos", "l1"):
        got = spatial_correlative_loss(src, tgt, ids, window, normalize, mode)
        assert got.item() == pytest.approx(reference_loss(a, b, normalize, mode).item(), rel=1e-10)


def test_window_key_ids_clamp_at_borders():
    keys = window_key_ids(torch.tensor([0, 12 * 20 - 1, 5 * 20 + 10]), 12, 20, 5)
    assert keys[0].tolist()[:5] == [0, 1, 2, 3, 4]  # top-left corner clamped to (0, 0)
    assert keys[1].tolist()[-1] == 12 * 20 - 1  # bottom-right window ends at the last position
    assert keys[2].tolist()[0] == 3 * 20 + 8  # centred: (5 - 2, 10 - 2)


# ---------------------------------------------------------------- properties
def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    src = torch.randn(1, 4, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(1, 4, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    other = torch.randn(1, 4, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = sample_query_ids(6, 5, 8, generator=gen)
    for normalize in (False, True):
        for mode in ("cos", "l1"):
            for window in (None, 3):
                assert torch.autograd.gradcheck(
                    lambda s, t, m=mode, w=window, n=normalize: spatial_correlative_loss(s, t, ids, w, n, m), (src, tgt)
                )
        assert torch.autograd.gradcheck(
            lambda s, t, o, n=normalize: contrastive_spatial_loss(s, t, o, ids, 3, n), (src, tgt, other)
        )


@pytest.mark.parametrize("mode", ["cos", "l1"])
@pytest.mark.parametrize("window", [None, 4])
def test_identical_inputs_give_zero(mode, window):
    feat = torch.randn(2, 8, 10, 9)
    ids = sample_query_ids(10, 9, 40)
    assert spatial_correlative_loss(feat, feat.clone(), ids, window, False, mode).item() == pytest.approx(0, abs=1e-6)
    assert spatial_correlative_loss(feat, feat.clone(), ids, window, True, mode).item() == pytest.approx(0, abs=1e-6)


def test_different_inputs_give_positive_loss():
    feat, other = torch.randn(2, 2, 8, 10, 9)
    ids = sample_query_ids(10, 9, 40)
    assert spatial_correlative_loss(feat, other, ids).item() > 1e-3


def test_invariant_to_per_channel_offsets():
    gen = torch.Generator().manual_seed(2)
    src, tgt = torch.randn(2, 2, 8, 12, 12, generator=gen, dtype=torch.float64)
    offset = torch.randn(2, 8, 1, 1, generator=gen, dtype=torch.float64) * 5
    ids = sample_query_ids(12, 12, 30, generator=gen)
    for normalize in (False, True):
        base = spatial_correlative_loss(src, tgt, ids, 5, normalize)
        shifted = spatial_correlative_loss(src + offset, tgt - offset, ids, 5, normalize)
        assert shifted.item() == pytest.approx(base.item(), rel=1e-10)


def test_normalized_invariant_to_positive_scale():
    gen = torch.Generator().manual_seed(3)
    src, tgt = torch.randn(2, 2, 8, 12, 12, generator=gen, dtype=torch.float64)
    ids = sample_query_ids(12, 12, 30, generator=gen)
    for mode in ("cos", "l1"):
        base = spatial_correlative_loss(src, tgt, ids, None, True, mode)
        scaled = spatial_correlative_loss(3.7 * src, 0.2 * tgt, ids, None, True, mode)
        assert scaled.item() == pytest.approx(base.item(), rel=1e-10)


def test_bfloat16_close_to_float32():
    gen = torch.Generator().manual_seed(4)
    src, tgt, other = torch.randn(3, 2, 32, 16, 16, generator=gen)
    ids = sample_query_ids(16, 16, 64, generator=gen)
    for window in (None, 8):
        full = spatial_correlative_loss(src, tgt, ids, window)
        half = spatial_correlative_loss(src.bfloat16(), tgt.bfloat16(), ids, window)
        assert half.dtype == torch.float32  # computed in float32
        # Only the inputs are rounded to bfloat16 (8 bits of mantissa): 2% relative is ample.
        assert half.item() == pytest.approx(full.item(), rel=2e-2)
        maps = self_similarity(src.bfloat16(), ids, window)
        assert maps.dtype == torch.float32
        nce = contrastive_spatial_loss(src.bfloat16(), tgt.bfloat16(), other.bfloat16(), ids, window)
        assert nce.item() == pytest.approx(contrastive_spatial_loss(src, tgt, other, ids, window).item(), rel=2e-2)


def test_top_quarter_mask_keeps_what_a_full_sort_keeps_ties_included():
    maps = torch.randn(2, 7, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    # Ties across the threshold: 13 equal entries with exactly 4 others above them occupy sorted
    # places 4-16, so the cut at place 33 // 4 = 8 falls inside the tie (not left to chance).
    above = maps[0, 0, 13:].sort(descending=True).values
    maps[0, 0, :13] = (above[3] + above[4]) / 2
    threshold = maps.sort(dim=-1, descending=True).values[..., 33 // 4 : 33 // 4 + 1]
    mask = top_quarter_mask(maps)
    assert torch.equal(mask, maps >= threshold)
    assert (mask.sum(-1) >= 33 // 4 + 1).all()
    assert mask[0, 0, :13].all()  # every tied entry kept
    for size in (4, 64, 4096):
        row = torch.randperm(size).double()[None]
        assert int(top_quarter_mask(row).sum()) == size // 4 + 1  # distinct values: exactly K // 4 + 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cuda_matches_cpu(dtype):
    gen = torch.Generator().manual_seed(6)
    src, tgt, other = torch.randn(3, 2, 16, 24, 20, generator=gen).to(dtype)
    tgt.requires_grad_()
    ids = sample_query_ids(24, 20, 64, generator=gen)
    for window in (None, 7):
        cpu = spatial_correlative_loss(src, tgt, ids, window)
        (grad_cpu,) = torch.autograd.grad(cpu, tgt)
        tgt_cuda = tgt.detach().cuda().requires_grad_()
        gpu = spatial_correlative_loss(src.cuda(), tgt_cuda, ids.cuda(), window)
        (grad_gpu,) = torch.autograd.grad(gpu, tgt_cuda)
        assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)
        assert torch.allclose(grad_gpu.float().cpu(), grad_cpu.float(), rtol=1e-3, atol=1e-7)
        nce = contrastive_spatial_loss(src.cuda(), tgt_cuda, other.cuda(), ids.cuda(), window)
        assert nce.item() == pytest.approx(contrastive_spatial_loss(src, tgt, other, ids, window).item(), rel=1e-4)


def test_deterministic_for_given_ids():
    src, tgt = torch.randn(2, 1, 16, 20, 20)
    ids = sample_query_ids(20, 20, 64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(spatial_correlative_loss(src, tgt, ids, 6), spatial_correlative_loss(src, tgt, ids, 6))


def test_sample_query_ids():
    gen = torch.Generator().manual_seed(0)
    ids = sample_query_ids(12, 20, 50, generator=gen)
    assert ids.shape == (50,) and ids.dtype == torch.long
    assert ids.unique().numel() == 50 and 0 <= ids.min() and ids.max() < 240
    assert sorted(sample_query_ids(3, 4, 500).tolist()) == list(range(12))
    again = sample_query_ids(12, 20, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)
    with pytest.raises(ValueError, match="n must be"):
        sample_query_ids(4, 4, 0)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda f, ids: spatial_correlative_loss(f, f[:, :4], ids), "shapes differ"),
        (lambda f, ids: spatial_correlative_loss(f[0], f[0], ids), r"\(B, C, H, W\)"),
        (lambda f, ids: spatial_correlative_loss(f, f, torch.tensor([0, 64])), r"\[0, 63\]"),
        (lambda f, ids: spatial_correlative_loss(f, f, torch.tensor([-1, 3])), r"\[0, 63\]"),
        (lambda f, ids: spatial_correlative_loss(f, f, torch.tensor([3, 5, 3])), "repeated"),
        (lambda f, ids: spatial_correlative_loss(f, f, ids, window=0), "window"),
        (lambda f, ids: spatial_correlative_loss(f, f, ids, mode="l2"), "mode"),
        (lambda f, ids: spatial_correlative_loss(f, f, ids.float()), "integer"),
        (lambda f, ids: self_similarity(f, ids, window=-3), "window"),
        (lambda f, ids: contrastive_spatial_loss(f, f, f[:1], ids), "other and source"),
        (lambda f, ids: contrastive_spatial_loss(f, f, f, ids, temperature=0), "temperature"),
        (
            lambda f, ids: spatial_correlative_loss(f[..., :1, :1], f[..., :1, :1], torch.tensor([0]), mode="l1"),
            "4 keys",
        ),
    ],
)
def test_bad_input_raises_clear_value_error(call, message):
    feat = torch.randn(2, 8, 8, 8)
    with pytest.raises(ValueError, match=message):
        call(feat, sample_query_ids(8, 8, 16))
