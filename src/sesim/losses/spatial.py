"""The spatially-correlative loss (Zheng, Cham, Cai, CVPR 2021), as pure functions.

A layer's *self-similarity* at a query position ``i`` compares the feature vector there with the
feature vectors at a set of key positions: the whole map (global) or a ``window x window``
neighbourhood around ``i`` (local). Two images share a structure when their similarity maps at
the same queries agree, whatever their appearance. In the paper's terms, for features ``f`` of
the input and ``f'`` of the translation::

    S_i   = sim(f_i, f_K)          the map of query i over its keys K       (self_similarity)
    M     = S'_i in its top quarter                                        (top_quarter_mask)
    L     = mean_i  rho(1 - cos(M * S_i, M * S'_i))                         (spatial_correlative_loss)

and LSeSim trains heads on the features so that maps of views sharing a structure match, by an
InfoNCE over the maps (:func:`contrastive_spatial_loss`).

Every function here is pure: no learnable weights, no device handling, no configuration object.
Query positions are sampled outside (:func:`sample_query_ids`) and passed in, so the same ids
serve the source, the translation and the "other" view of one layer. Everything is plain
autograd: measured on a 2-core CPU, the loss is under 2% of a training step, and a hand-written
backward (earlier versions) made the step no faster than the run-to-run spread.

Shapes: features ``(B, C, H, W)``; query ids ``(n,)`` flat row-major positions ``h * W + w``;
similarity maps ``(B, n, K)`` with ``K = H * W`` (global) or ``window ** 2`` (local).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from sesim.losses.info_nce import info_nce
from sesim.losses.precision import at_least_float32

__all__ = [
    "COMPARISONS",
    "Mode",
    "contrastive_spatial_loss",
    "sample_query_ids",
    "self_similarity",
    "spatial_correlative_loss",
    "top_quarter_mask",
    "window_key_ids",
]

Mode = Literal["cos", "l1"]

# The authors' unnormalised maps are squashed as tanh(s / 10).
_TANH_SCALE = 10.0

_Fn = TypeVar("_Fn", bound=Callable)


def _outside_autocast(fn: _Fn) -> _Fn:
    """Run ``fn`` with autocast off on the features' device: inside a mixed-precision training
    step the maps, the threshold and the loss are still computed in float32."""

    @functools.wraps(fn)
    def wrapper(features: Tensor, *args, **kwargs):
        device_type = features.device.type if isinstance(features, Tensor) else "cpu"
        if not torch.is_autocast_enabled(device_type):
            return fn(features, *args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(features, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def sample_query_ids(
    height: int,
    width: int,
    n: int = 256,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw ``n`` distinct flat query positions of a ``height x width`` map.

    Args:
        height: map height ``H``.
        width: map width ``W``.
        n: number of queries; ``n >= H * W`` returns every position (in random order).
        generator: optional ``torch.Generator`` for reproducible draws. Its device decides
            where the permutation is drawn; the result is then moved to ``device``.
        device: where the returned ids live (default: the generator's device, else CPU).

    Returns:
        LongTensor ``(min(n, H * W),)`` of distinct row-major ids ``h * W + w``.

    Example:
        >>> sample_query_ids(2, 3, n=10, generator=torch.Generator().manual_seed(0)).sort().values
        tensor([0, 1, 2, 3, 4, 5])
    """
    if height < 1 or width < 1:
        raise ValueError(f"sample_query_ids: height and width must be >= 1, got {height}x{width}")
    if n < 1:
        raise ValueError(f"sample_query_ids: n must be >= 1, got {n}")
    draw_device = generator.device if generator is not None else (device or "cpu")
    ids = torch.randperm(height * width, generator=generator, device=draw_device)[: min(n, height * width)]
    return ids if device is None else ids.to(device, non_blocking=True)


def _is_global(height: int, width: int, window: int | None) -> bool:
    """The authors' rule: a window is local only when smaller than both H and W."""
    return window is None or not (window < height and window < width)


def window_key_ids(query_ids: Tensor, height: int, width: int, window: int) -> Tensor:
    """Flat key positions of the clamped ``window x window`` neighbourhood of each query.

    The window's top-left corner is ``(row - window // 2, col - window // 2)`` clamped to
    ``[0, H - window] x [0, W - window]``; keys are row-major inside the window. Correct for
    any ``H`` and ``W`` (the authors' loop swaps them, which only works for square maps).

    Returns:
        LongTensor ``(n, window ** 2)`` of flat ids into the ``H * W`` map.

    Example:
        >>> window_key_ids(torch.tensor([0, 7]), height=3, width=4, window=2)  # corners clamp
        tensor([[0, 1, 4, 5],
                [2, 3, 6, 7]])
    """
    rows = torch.div(query_ids, width, rounding_mode="floor")
    cols = query_ids - rows * width
    top = (rows - window // 2).clamp(0, height - window)
    left = (cols - window // 2).clamp(0, width - window)
    offsets = torch.arange(window, device=query_ids.device)
    key_rows = top[:, None, None] + offsets[None, :, None]  # (n, p, 1)
    key_cols = left[:, None, None] + offsets[None, None, :]  # (n, 1, p)
    return (key_rows * width + key_cols).reshape(query_ids.numel(), window * window)


def _check_features(name: str, features: Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(f"{name}: expected a feature map (B, C, H, W), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"{name}: expected floating-point features, got {features.dtype}")


def _check_query_ids(query_ids: Tensor, height: int, width: int) -> None:
    """Validate query ids. Their values are checked only for CPU ids: on an accelerator reading
    them would make the host wait for the device on every call (ids drawn by
    :func:`sample_query_ids` are valid)."""
    if query_ids.dim() != 1 or query_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"query_ids: expected a 1-D integer tensor, got shape {tuple(query_ids.shape)} and {query_ids.dtype}"
        )
    if query_ids.numel() == 0:
        raise ValueError("query_ids: empty; draw them with sample_query_ids(height, width, n)")
    if query_ids.device.type != "cpu":
        return
    low, high = int(query_ids.min()), int(query_ids.max())
    if low < 0 or high >= height * width:
        raise ValueError(
            f"query_ids: values must lie in [0, {height * width - 1}] for a {height}x{width} map, "
            f"got range [{low}, {high}]"
        )
    if torch.unique(query_ids).numel() != query_ids.numel():
        raise ValueError("query_ids: contains repeated positions; each query must be distinct")


def _check_window(window: int | None) -> None:
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window: expected None (global) or an integer >= 1, got {window!r}")


def _check_pair(source: Tensor, target: Tensor, other: Tensor | None = None) -> None:
    _check_features("source", source)
    _check_features("target", target)
    if source.shape != target.shape:
        raise ValueError(f"source and target shapes differ: {tuple(source.shape)} vs {tuple(target.shape)}")
    if other is not None:
        _check_features("other", other)
        if other.shape != source.shape:
            raise ValueError(f"other and source shapes differ: {tuple(other.shape)} vs {tuple(source.shape)}")


@_outside_autocast
def self_similarity(
    features: Tensor,
    query_ids: Tensor,
    window: int | None = None,
    normalize: bool = False,
) -> Tensor:
    """One layer's self-similarity maps at the given queries.

    The features are centred over positions, ``g = f - mean_hw(f)``. With ``normalize=False``
    (the authors') ``s_ij = tanh(g_i . g_j / (10 C))``, i.e. ``1 / sqrt(C)`` on both sides and
    ``/ 10`` in the tanh; with ``normalize=True`` ``s_ij = cos(g_i, g_j)``. ``j`` runs over the
    keys of query ``i``: every position, or its clamped window (:func:`window_key_ids`).

    Args:
        features: ``(B, C, H, W)``; float16/bfloat16 inputs are computed in float32.
        query_ids: ``(n,)`` distinct flat positions.
        window: ``None`` or a window not smaller than both ``H`` and ``W`` means global keys
            (``K = H * W``); otherwise the clamped ``window x window`` neighbourhood (``K = window**2``).
        normalize: cosine similarity (True) or the authors' scaled, squashed dot product (False).

    Returns:
        ``(B, n, K)`` similarity maps.

    Example:
        >>> stripes = torch.tensor([[1.0, -1.0, 1.0, -1.0]]).view(1, 1, 1, 4)  # one channel
        >>> self_similarity(stripes, torch.tensor([0]), normalize=True)  # like, unlike, like ...
        tensor([[[ 1., -1.,  1., -1.]]])
    """
    _check_features("features", features)
    _check_window(window)
    batch, channels, height, width = features.shape
    _check_query_ids(query_ids, height, width)
    query_ids = query_ids.to(features.device)
    centred = at_least_float32(features).flatten(2)  # (B, C, HW)
    centred = centred - centred.mean(-1, keepdim=True)
    centred = F.normalize(centred, dim=1) if normalize else centred / math.sqrt(channels)
    queries = centred[:, :, query_ids].transpose(1, 2)  # (B, n, C)
    maps = queries @ centred  # (B, n, HW): each query against every position, one matmul
    if not _is_global(height, width, window):
        keys = window_key_ids(query_ids, height, width, window)
        maps = maps.gather(2, keys.expand(batch, -1, -1))  # (B, n, window**2)
    return maps if normalize else torch.tanh(maps / _TANH_SCALE)


def top_quarter_mask(maps: Tensor) -> Tensor:
    """``maps >= t`` per row, where ``t`` is the row's value at sorted (descending, 0-based)
    position ``K // 4``: the entries the loss compares (ties at ``t`` are kept).

    Example:
        >>> top_quarter_mask(torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]]))
        tensor([[False,  True, False, False,  True, False,  True, False]])
    """
    size = maps.shape[-1]
    threshold = maps.kthvalue(size - size // 4, dim=-1, keepdim=True).values  # (K//4 + 1)-th largest
    return maps >= threshold


def _rho(values: Tensor, smooth: bool) -> Tensor:
    """Mean of SmoothL1 (beta 1; the authors' tanh maps) or L1 (cosine maps) of ``values``."""
    zeros = torch.zeros_like(values)
    return F.smooth_l1_loss(values, zeros) if smooth else F.l1_loss(values, zeros)


def _compare_cos(source: Tensor, target: Tensor, smooth: bool) -> Tensor:
    """``rho(1 - cos(a_i, b_i))`` per map row, averaged (norms floored at 1e-8)."""
    eps = 1e-8
    norms = torch.linalg.vector_norm(source, dim=-1).clamp_min(eps) * torch.linalg.vector_norm(
        target, dim=-1
    ).clamp_min(eps)
    return _rho(1.0 - torch.linalg.vecdot(source, target) / norms, smooth)


def _compare_l1(source: Tensor, target: Tensor, smooth: bool) -> Tensor:
    """``rho(s a - s b)`` elementwise with ``s = K / (K // 4)`` (the kept entries' mean, rescaled)."""
    size = target.shape[-1]
    scale = size / (size // 4)
    return _rho(scale * source - scale * target, smooth)


# ``loss.mode`` -> how the masked maps of source and translation are compared.
COMPARISONS: dict[str, Callable[[Tensor, Tensor, bool], Tensor]] = {
    "cos": _compare_cos,  # the paper's: 1 - cosine between map rows
    "l1": _compare_l1,  # elementwise on the rescaled maps
}


@_outside_autocast
def spatial_correlative_loss(
    source: Tensor,
    target: Tensor,
    query_ids: Tensor,
    window: int | None = None,
    normalize: bool = False,
    mode: Mode = "cos",
) -> Tensor:
    """The generator's structure loss for one layer (FSeSim / LSeSim generator step).

    With ``a = self_similarity(source)`` and ``b = self_similarity(target)`` at the same queries,
    both are zeroed outside ``top_quarter_mask(b)`` (the mask carries no gradient), then, per
    row, ``mode="cos"`` takes ``rho(1 - cos(a, b))`` and ``mode="l1"`` takes
    ``rho(s * a - s * b)`` elementwise with ``s = K / (K // 4)``; ``rho`` is L1 when
    ``normalize=True`` and SmoothL1 (beta 1) otherwise. The mean is returned.

    Args:
        source: features of the input image ``(B, C, H, W)`` (the authors detach these).
        target: features of the translated image, same shape.
        query_ids: ``(n,)`` distinct flat positions shared by both maps.
        window: local window size or ``None`` for global keys.
        normalize: cosine maps (True) or the authors' ``tanh`` maps (False).
        mode: ``"cos"`` (default) or ``"l1"`` (:data:`COMPARISONS`).

    Returns:
        Scalar loss (float32 for low-precision inputs, else the input dtype).

    Example:
        >>> f_src, f_tgt = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
        >>> ids = sample_query_ids(6, 6, n=16, generator=torch.Generator().manual_seed(0))
        >>> round(float(spatial_correlative_loss(f_src, 3 * f_src + 1, ids, normalize=True)), 6)  # same structure
        0.0
        >>> spatial_correlative_loss(f_src, f_tgt, ids).shape
        torch.Size([])
    """
    _check_pair(source, target)
    _check_window(window)
    if mode not in COMPARISONS:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, COMPARISONS))}, got {mode!r}")
    _, _, height, width = source.shape
    keys_per_map = height * width if _is_global(height, width, window) else window * window
    if mode == "l1" and keys_per_map < 4:
        raise ValueError(f"mode='l1' needs at least 4 keys per map, got {keys_per_map}; use a larger window or map")
    maps_source = self_similarity(source, query_ids, window, normalize)
    maps_target = self_similarity(target, query_ids, window, normalize)
    kept = top_quarter_mask(maps_target.detach())
    return COMPARISONS[mode](maps_source * kept, maps_target * kept, not normalize)


@_outside_autocast
def contrastive_spatial_loss(
    source: Tensor,
    target: Tensor,
    other: Tensor,
    query_ids: Tensor,
    window: int | None = None,
    normalize: bool = False,
    temperature: float = 0.07,
) -> Tensor:
    """The LSeSim objective for one layer: an InfoNCE over similarity maps.

    Rows of the three maps ``(B, n, K)`` are L2-normalised over ``K``. For query ``i`` the
    logits are ``[src_i . tgt_j, src_i . other_j, tgt_i . other_j]`` for ``j = 1..n``, divided
    by ``temperature`` (``(B * n, 3n)``); the positive is ``src_i . tgt_i`` (class ``i``).

    Args:
        source, target: two views that share a structure (``(B, C, H, W)`` each).
        other: a view with a different structure (the authors rotate a target-domain image by 180).
        query_ids: ``(n,)`` distinct flat positions shared by all three maps.
        window, normalize: as in :func:`self_similarity`.
        temperature: softmax temperature ``T``.

    Returns:
        Scalar cross-entropy.
    """
    _check_pair(source, target, other)
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    maps_source, maps_target, maps_other = (
        F.normalize(self_similarity(view, query_ids, window, normalize), dim=-1) for view in (source, target, other)
    )
    logits = torch.cat(
        [
            maps_source @ maps_target.transpose(1, 2),  # (B, n, n): the positives on the diagonal
            maps_source @ maps_other.transpose(1, 2),
            maps_target @ maps_other.transpose(1, 2),
        ],
        dim=-1,
    )
    return info_nce(logits, temperature)
