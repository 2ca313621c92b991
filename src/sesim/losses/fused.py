"""The spatially-correlative losses of several taps at once: the fast twin of :mod:`sesim.losses.spatial`.

A training step computes the structure loss on three taps, each for the source and the
translation, and on a GPU at batch 1 its time is the number of kernels it launches, not their
arithmetic. Here the taps whose features have one shape (VGG16's ``relu4_1`` and ``relu4_3``) are
stacked with the source and the translation into one tensor, so centring, scaling, the query
gather, the similarity matmul, the squashing, the top-quarter mask and the comparison are one
kernel each for all of them. The values are those of the readable functions (tests hold them
equal); the query ids are drawn by the caller, one ``(n,)`` tensor per tap, as there.

Shapes: ``sources[t]``, ``targets[t]``: ``(B, C_t, H_t, W_t)``; ``query_ids[t]``: ``(n,)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

from sesim.losses.precision import at_least_float32
from sesim.losses.spatial import _TANH_SCALE, _is_global, window_key_ids

__all__ = ["contrastive_spatial_loss_taps", "spatial_correlative_loss_taps"]


def _groups(features: Sequence[Tensor]) -> dict[tuple, list[int]]:
    """Tap indices by feature shape, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for index, tap in enumerate(features):
        groups.setdefault(tuple(tap.shape), []).append(index)
    return groups


def _float32_maps(features: Sequence[Tensor]):
    """Autocast off on the features' device: inside a mixed-precision step the maps, the mask and
    the loss are float32, as in the readable form."""
    device_type = features[0].device.type
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()


def _stack(tensors: list[Tensor]) -> Tensor:
    """``torch.stack``, a view for one tensor (no copy kernel)."""
    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)


def _stacked_maps(stacked: Tensor, ids: Tensor, window: int | None, normalize: bool) -> Tensor:
    """Similarity maps of ``(R * T, B, C, H, W)`` features (``R`` runs of the same ``T`` taps), map
    ``r * T + t`` at queries ``ids[t]`` (``(T, n)``): ``(R * T, B, n, K)``, as
    :func:`~sesim.losses.spatial.self_similarity` computes each."""
    taps, n = ids.shape
    stacked = stacked.unflatten(0, (-1, taps))  # (R, T, B, C, H, W)
    runs, _, batch, channels, height, width = stacked.shape
    flat = at_least_float32(stacked).flatten(4)  # (R, T, B, C, HW)
    centred = flat - flat.mean(-1, keepdim=True)
    if normalize:
        centred = F.normalize(centred, dim=3)
    index = ids[None, :, None, None, :].expand(runs, taps, batch, channels, n)  # a view: no copy
    queries = centred.gather(4, index)  # (R, T, B, C, n)
    maps = queries.transpose(3, 4) @ centred  # (R, T, B, n, HW)
    if not _is_global(height, width, window):
        keys = _stack([window_key_ids(row, height, width, window) for row in ids])  # (T, n, p*p)
        maps = maps.gather(4, keys[None, :, None].expand(runs, taps, batch, n, window * window))
    maps = maps.flatten(0, 1)
    # normalize=False: tanh(q . k / (10 C)), the 1 / sqrt(C) of each side and the 1 / 10 as one scale.
    return maps if normalize else torch.tanh(maps * (1.0 / (_TANH_SCALE * channels)))


class _MaskedComparison(torch.autograd.Function):
    """``mean(rho(compare(a * kept, b * kept)))`` with its gradient for ``b`` written out: the
    source maps ``a`` and the mask carry none, and autograd's chain for the cosine (two norms,
    their clamps, a quotient) takes twice the kernels of these few lines.

    ``cos``: per row ``d = 1 - c`` with ``c = a.b / (|a| |b|)`` (norms floored at 1e-8), so
    ``dc/db = a / (|a| |b|) - c b / |b|^2``. ``l1``: elementwise ``d = s (a - b)`` with
    ``s = K / (K // 4)``, so ``dd/db = -s``. ``rho`` is SmoothL1 (beta 1; ``rho'(d) = clamp(d, -1, 1)``)
    or L1 (``rho'(d) = sign(d)``). Where a norm is floored (below 1e-8) it is a constant, so the
    ``c b / |b|^2`` term drops there, as autograd's clamp would have it."""

    @staticmethod
    def forward(ctx, maps: Tensor, kept: Tensor, mode: str, smooth: bool) -> Tensor:
        """``maps``: the source's maps then the target's (equal halves); ``kept``: the target's mask."""
        source, target = maps.chunk(2)
        a, b = source * kept, target * kept
        rho = F.smooth_l1_loss if smooth else F.l1_loss
        ctx.mode, ctx.smooth, ctx.shape = mode, smooth, maps.shape
        if mode == "cos":
            norm_a = torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp_min(1e-8)
            norm_b = torch.linalg.vector_norm(b, dim=-1, keepdim=True).clamp_min(1e-8)
            norms = norm_a * norm_b
            cos = torch.linalg.vecdot(a, b).unsqueeze(-1) / norms
            ctx.save_for_backward(a, b, kept, norm_b, norms, cos)
            ctx.count = cos.numel()
            return rho(cos, torch.ones_like(cos))  # rho(1 - cos) = rho(cos - 1): rho is even
        size = target.shape[-1]
        ctx.scale = size / (size // 4)
        distance = (a - b) * ctx.scale
        ctx.save_for_backward(kept, distance)
        ctx.count = distance.numel()
        return rho(distance, torch.zeros_like(distance))

    @staticmethod
    def backward(ctx, grad: Tensor):
        scale = grad / ctx.count
        if ctx.mode == "cos":
            a, b, kept, norm_b, norms, cos = ctx.saved_tensors
            # dL/dc = -rho'(1 - c); 1 - c lies in [0, 2], so SmoothL1's clamp is only the upper one.
            slope = ((cos - 1).clamp_min(-1) if ctx.smooth else (cos - 1).sign()) * scale
            along_b = slope * cos / norm_b.square() * (norm_b > 1e-8)  # a floored norm is a constant
            grad_target = torch.addcmul(a * (slope / norms), b, along_b, value=-1)
        else:
            kept, distance = ctx.saved_tensors
            slope = distance.clamp(-1, 1) if ctx.smooth else distance.sign()
            grad_target = slope * (scale * -ctx.scale)
        grad_maps = grad_target.new_zeros(ctx.shape)  # the source's half takes none
        torch.mul(grad_target, kept, out=grad_maps[len(grad_maps) // 2 :])
        return grad_maps, None, None, None


def spatial_correlative_loss_taps(
    sources: Sequence[Tensor],
    targets: Sequence[Tensor],
    query_ids: Sequence[Tensor],
    window: int | None = None,
    normalize: bool = False,
    mode: str = "cos",
) -> Tensor:
    """The mean over taps of :func:`~sesim.losses.spatial.spatial_correlative_loss`, taps of one
    shape and the source with the translation computed together.

    Args:
        sources: per tap, the input image's features (no gradient is taken through them).
        targets: per tap, the translation's features (same shapes).
        query_ids: per tap, ``(n,)`` distinct flat positions (one ``n`` for all taps).
        window, normalize, mode: as in the readable form.

    Returns:
        Scalar loss (float32 for low-precision inputs).
    """
    with _float32_maps(sources):
        return _structure_taps(sources, targets, query_ids, window, normalize, mode)


def _structure_taps(sources, targets, query_ids, window, normalize, mode) -> Tensor:
    total = None
    for indices in _groups(sources).values():
        count = len(indices)
        stacked = torch.stack([sources[i].detach() for i in indices] + [targets[i] for i in indices])
        maps = _stacked_maps(stacked, _stack([query_ids[i] for i in indices]), window, normalize)  # (2T, B, n, K)
        target = maps[count:].detach()
        kept = target >= target.kthvalue(target.shape[-1] - target.shape[-1] // 4, dim=-1, keepdim=True).values
        part = _MaskedComparison.apply(maps, kept, mode, not normalize)
        if count != len(sources):
            part = part * (count / len(sources))  # each tap's mean, weighted as one of all taps
        total = part if total is None else total + part
    return total


def contrastive_spatial_loss_taps(
    views: Sequence[Tensor],
    query_ids: Sequence[Tensor],
    window: int | None = None,
    normalize: bool = False,
    temperature: float = 0.07,
) -> Tensor:
    """The mean over taps of :func:`~sesim.losses.spatial.contrastive_spatial_loss`, taps of one
    shape computed together.

    Args:
        views: per tap, ``(3B, C, H, W)``: the source, target and other views stacked along the batch.
        query_ids: per tap, ``(n,)`` distinct flat positions shared by the three views.
        window, normalize, temperature: as in the readable form.
    """
    with _float32_maps(views):
        return _contrastive_taps(views, query_ids, window, normalize, temperature)


def _contrastive_taps(views, query_ids, window, normalize, temperature) -> Tensor:
    total = None
    for indices in _groups(views).values():
        count = len(indices)
        stacked = _stack([views[i] for i in indices])  # (T, 3B, C, H, W)
        ids = _stack([query_ids[i] for i in indices])
        maps = F.normalize(_stacked_maps(stacked, ids, window, normalize), dim=-1)  # (T, 3B, n, K)
        source, target, other = maps.chunk(3, dim=1)
        logits = torch.cat(
            [source @ target.transpose(2, 3), source @ other.transpose(2, 3), target @ other.transpose(2, 3)], dim=-1
        )  # (T, B, n, 3n)
        n = logits.shape[2]
        labels = torch.arange(n, device=logits.device).repeat(logits.shape[0] * logits.shape[1])
        part = F.cross_entropy(logits.flatten(0, 2) * (1.0 / temperature), labels) * (count / len(views))
        total = part if total is None else total + part
    return total
