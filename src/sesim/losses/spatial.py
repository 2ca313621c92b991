"""The spatially-correlative loss (Zheng, Cham, Cai, CVPR 2021), as pure functions.

A layer's *self-similarity* at a query position ``i`` is the dot product of the (centred,
scaled) feature vector at ``i`` with the feature vectors at a set of key positions: the whole
map (global) or a ``window x window`` neighbourhood around ``i`` (local). Two images share a
structure when their similarity maps at the same queries agree, whatever their appearance.

Every function here is pure: no learnable weights, no device handling, no configuration
object. Query positions are sampled outside (:func:`sample_query_ids`) and passed in, so the
same ids can serve the source, the translation and the "other" view of one layer.

Shapes: features ``(B, C, H, W)``; query ids ``(n,)`` flat row-major positions ``h * W + w``;
similarity maps ``(B, n, K)`` with ``K = H * W`` (global) or ``window ** 2`` (local).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sesim.losses.precision import at_least_float32

__all__ = [
    "Mode",
    "contrastive_spatial_loss",
    "sample_query_ids",
    "self_similarity",
    "spatial_correlative_loss",
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
    """Validate query ids. Value checks run only for CPU ids: on an accelerator they would force
    a device-to-host sync in the hot path (ids drawn by :func:`sample_query_ids` are valid)."""
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


class _Prepared(NamedTuple):
    """One layer's features ready for similarity maps.

    ``keys`` ``(B, C, HW)``: the raw features (``normalize=False``) or the centred, unit-length
    ones (``normalize=True``). ``mean`` ``(B, C)``: the spatial mean still to subtract, or ``None``.
    ``scale``: the factor folded into the queries (``1 / (10 C)`` for the authors' tanh maps:
    their ``1 / sqrt(C)`` on both sides and ``/ 10`` inside the tanh).
    """

    keys: Tensor
    mean: Tensor | None
    scale: float


def _flat(features: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, C, HW)``, low-precision inputs promoted to float32."""
    return at_least_float32(features).flatten(2)


def _tanh_query_scale(channels: int) -> float:
    """The authors' ``1 / sqrt(C)`` on both sides and ``/ 10`` inside the tanh, as one factor."""
    return 1.0 / (_TANH_SCALE * channels)


def _prepare(features: Tensor, normalize: bool) -> _Prepared:
    keys = _flat(features)
    if normalize:
        return _Prepared(F.normalize(keys - keys.mean(-1, keepdim=True), dim=1), None, 1.0)
    return _Prepared(keys, keys.mean(-1), _tanh_query_scale(features.shape[1]))


def _queries(prepared: _Prepared, query_ids: Tensor) -> Tensor:
    """``(B, n, C)``: ``scale * (f_i - mean)`` at the query positions."""
    keys = prepared.keys
    # gather is 2x faster than index_select along the last dimension on CPU.
    picked = keys.gather(2, query_ids.view(1, 1, -1).expand(keys.shape[0], keys.shape[1], -1))
    if prepared.mean is not None:
        picked = picked - prepared.mean.unsqueeze(-1)
    return (picked * prepared.scale).transpose(1, 2)


def _raw_maps(queries: Tensor, keys: Tensor, mean: Tensor | None) -> Tensor:
    """``q . (k_j - mean)`` for every position ``j``: ``(B, n, HW)``.

    The centring is folded into the product, ``q . k_j - q . mean``, so the centred copy of the
    whole feature map (and its backward) is never built.
    """
    if mean is None:
        return torch.bmm(queries, keys)
    return torch.baddbmm(-(queries @ mean.unsqueeze(-1)), queries, keys)


def _key_ids(query_ids: Tensor, height: int, width: int, window: int | None, batch: int) -> Tensor | None:
    """``(B, n, window ** 2)`` window key ids for a local map, ``None`` for a global one."""
    if _is_global(height, width, window):
        return None
    return window_key_ids(query_ids, height, width, window).unsqueeze(0).expand(batch, -1, -1)


def _maps(queries: Tensor, prepared: _Prepared, key_ids: Tensor | None, squash: bool) -> Tensor:
    """``(B, n, K)`` maps: one matmul against every position, then each query's window.

    For the usual sizes (64x64 map, window 32, C 256) one dense matmul and a gather is far
    cheaper than materialising ``(B, n, K, C)`` windows of keys.
    """
    sim = _raw_maps(queries, prepared.keys, prepared.mean)
    if key_ids is not None:
        sim = sim.gather(2, key_ids)
    return sim.tanh_() if squash else sim


@_outside_autocast
def self_similarity(
    features: Tensor,
    query_ids: Tensor,
    window: int | None = None,
    normalize: bool = False,
) -> Tensor:
    """One layer's self-similarity maps at the given queries.

    ``s_i = f_i . f_K`` for the centred, scaled features ``f`` (see the module docstring),
    then ``tanh(s / 10)`` when ``normalize=False``.

    Args:
        features: ``(B, C, H, W)``; float16/bfloat16 inputs are computed in float32.
        query_ids: ``(n,)`` distinct flat positions.
        window: ``None`` or a window not smaller than both ``H`` and ``W`` means global keys
            (``K = H * W``); otherwise the clamped ``window x window`` neighbourhood (``K = window**2``).
        normalize: cosine similarity (True) or the authors' ``1 / sqrt(C)`` scaling (False).

    Returns:
        ``(B, n, K)`` similarity maps.
    """
    _check_features("features", features)
    _check_window(window)
    batch, _, height, width = features.shape
    _check_query_ids(query_ids, height, width)
    query_ids = query_ids.to(features.device)
    key_ids = _key_ids(query_ids, height, width, window, batch)
    prepared = _prepare(features, normalize)
    return _maps(_queries(prepared, query_ids), prepared, key_ids, not normalize)


def _check_pair(source: Tensor, target: Tensor, other: Tensor | None = None) -> None:
    _check_features("source", source)
    _check_features("target", target)
    if source.shape != target.shape:
        raise ValueError(f"source and target shapes differ: {tuple(source.shape)} vs {tuple(target.shape)}")
    if other is not None:
        _check_features("other", other)
        if other.shape != source.shape:
            raise ValueError(f"other and source shapes differ: {tuple(other.shape)} vs {tuple(source.shape)}")


# Elements per thread below which splitting the selection over threads does not pay.
_SELECT_MIN_ELEMENTS_PER_THREAD = 1 << 17
_select_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _select_pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool for numpy's selection, one per process and size: a pool inherited through
    ``fork`` (DataLoader workers) has no live threads, so each process id gets its own."""
    key = (os.getpid(), workers)
    if key not in _select_pools:
        _select_pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="sesim-select")
    return _select_pools[key]


def _kth_largest(maps: Tensor, k: int) -> Tensor:
    """``(B, n, 1)``: the value at sorted (descending, 0-based) position ``k`` of each row."""
    size = maps.shape[-1]
    if maps.device.type != "cpu":
        return _kth_largest_topk(maps, k)
    # numpy's introselect is 3x faster than torch.topk / kthvalue on CPU (256x4096: 2.1 vs 6.3 ms),
    # and it releases the GIL, so row blocks run in parallel on torch's intra-op thread count.
    rows = maps.detach().reshape(-1, size).numpy()
    out = np.empty((rows.shape[0], 1), dtype=rows.dtype)

    def select(block: slice) -> None:
        out[block] = np.partition(rows[block], size - 1 - k, axis=-1)[:, size - 1 - k : size - k]

    workers = min(torch.get_num_threads(), rows.shape[0], rows.size // _SELECT_MIN_ELEMENTS_PER_THREAD)
    if workers <= 1:
        select(slice(None))
    else:
        bounds = np.linspace(0, rows.shape[0], workers + 1).astype(int)
        blocks = [slice(start, stop) for start, stop in itertools.pairwise(bounds)]
        list(_select_pool(workers).map(select, blocks))  # list(): wait, and re-raise any error
    return torch.from_numpy(out).view(*maps.shape[:-1], 1)


def _kth_largest_topk(maps: Tensor, k: int) -> Tensor:
    """The accelerator path of :func:`_kth_largest`."""
    return maps.topk(k + 1, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)


def _rho_grad(x: Tensor, smooth: bool) -> Tensor:
    """Derivative of SmoothL1 (beta 1) or L1 at ``x``."""
    return x.clamp(-1.0, 1.0) if smooth else x.sign()


def _add_at_queries(grad_keys: Tensor, query_ids: Tensor, grad: Tensor, scale: float) -> Tensor:
    """``grad_keys[:, :, query_ids] += scale * grad`` in place, for ``grad`` ``(B, C, n)``.

    On CPU ``scatter_add_`` is 2-3x faster than ``index_add_`` along the last dimension; on CUDA
    ``index_add_`` stays, as it has a deterministic mode (``torch.use_deterministic_algorithms``).
    The ids are distinct, so either sums exactly one term into each position.
    """
    if grad_keys.device.type != "cpu":
        return grad_keys.index_add_(2, query_ids, grad, alpha=scale)
    index = query_ids.view(1, 1, -1).expand(grad.shape)
    return grad_keys.scatter_add_(2, index, grad.mul(scale).contiguous())


class _StructureLoss(torch.autograd.Function):
    """Maps, sparsification and comparison of one layer, forward and backward by hand.

    Autograd would keep a dozen map-sized intermediates and pass over them twice as often; the
    hand-written backward reuses the two masked maps, and takes the centring and the query
    gather back to the keys without building the centred feature map.
    """

    @staticmethod
    def forward(ctx, keys_src, keys_tgt, centre, scale, query_ids, key_ids, squash, mode, smooth):
        with torch.no_grad():
            # The spatial mean is taken here, so its gradient can be folded into a matmul below.
            mean_src = keys_src.mean(-1) if centre else None
            mean_tgt = keys_tgt.mean(-1) if centre else None
            prepared_src = _Prepared(keys_src, mean_src, scale)
            prepared_tgt = _Prepared(keys_tgt, mean_tgt, scale)
            queries_src = _queries(prepared_src, query_ids)
            queries_tgt = _queries(prepared_tgt, query_ids)
            src = _maps(queries_src, prepared_src, key_ids, squash)
            tgt = _maps(queries_tgt, prepared_tgt, key_ids, squash)
            size = tgt.shape[-1]
            kept = size // 4
            # A 0/1 mask in the maps' dtype: building it and multiplying by it is 3x faster on CPU
            # than a boolean mask (converted on every use) or masked_fill_; the maps are finite.
            keep = torch.ge(tgt, _kth_largest(tgt, kept).to(tgt.device), out=torch.empty_like(tgt))
            src.mul_(keep)
            tgt.mul_(keep)
            if mode == "cos":
                eps = 1e-8
                norm_src = torch.linalg.vector_norm(src, dim=-1).clamp_min(eps)
                norm_tgt = torch.linalg.vector_norm(tgt, dim=-1).clamp_min(eps)
                cosine = torch.linalg.vecdot(src, tgt) / (norm_src * norm_tgt)
                distance = 1.0 - cosine
                loss = (F.smooth_l1_loss if smooth else F.l1_loss)(distance, torch.zeros_like(distance))
                saved = (norm_src, norm_tgt, cosine)
            else:
                ctx.scale_l1 = size / kept
                diff = (src - tgt).mul_(ctx.scale_l1)
                loss = (F.smooth_l1_loss if smooth else F.l1_loss)(diff, torch.zeros_like(diff))
                saved = (diff,)
        ctx.save_for_backward(
            keys_src, keys_tgt, mean_src, mean_tgt, queries_src, queries_tgt, query_ids, key_ids, src, tgt, *saved
        )
        ctx.scale, ctx.squash, ctx.mode, ctx.smooth = scale, squash, mode, smooth
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        keys_src, keys_tgt, mean_src, mean_tgt, queries_src, queries_tgt, query_ids, key_ids, src, tgt, *saved = (
            ctx.saved_tensors
        )
        need_src, need_tgt = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.mode == "cos":
            norm_src, norm_tgt, cosine = saved
            # d rho(1 - cos) / d cos, averaged over the B * n rows.
            g = -grad_loss * _rho_grad(1.0 - cosine, ctx.smooth) / cosine.numel()
            inv = g / (norm_src * norm_tgt)

            def map_grad(own, partner, own_norm):
                # d cos / d own = partner / (|own| |partner|) - cos * own / |own|^2
                grad = partner * inv.unsqueeze(-1)
                return grad.addcmul_(own, (g * cosine / own_norm.square()).unsqueeze(-1), value=-1.0)

            grad_src = map_grad(src, tgt, norm_src) if need_src else None
            grad_tgt = map_grad(tgt, src, norm_tgt) if need_tgt else None
        else:
            (diff,) = saved
            grad_diff = _rho_grad(diff, ctx.smooth).mul_(grad_loss * ctx.scale_l1 / diff.numel())
            grad_src = grad_diff if need_src else None
            grad_tgt = -grad_diff if need_tgt else None

        def through_maps(grad_map, maps, keys, mean, queries):
            """Gradient of the keys from the gradient of the (masked) maps."""
            if grad_map is None:
                return None
            if ctx.squash:
                # tanh' = 1 - tanh^2 in one fused pass; dropped entries carry no gradient, so the
                # masked map serves.
                grad_map = torch.ops.aten.tanh_backward(grad_map, maps)
            if key_ids is not None:
                full = grad_map.new_zeros(grad_map.shape[0], grad_map.shape[1], keys.shape[-1])
                grad_map = full.scatter_(2, key_ids, grad_map)
            if mean is None:
                grad_queries = torch.bmm(grad_map, keys.transpose(1, 2))
                grad_keys = torch.bmm(queries.transpose(1, 2), grad_map)
            else:
                # raw = q . (k_j - mean) with q = scale * (k_ids - mean): the mean enters twice, and
                # mean = keys.mean(-1) spreads its gradient evenly over every position.
                row_sums = grad_map.sum(-1, keepdim=True)  # (B, n, 1)
                grad_queries = torch.baddbmm(-(row_sums * mean.unsqueeze(1)), grad_map, keys.transpose(1, 2))
                grad_mean = -(queries * row_sums).sum(1) - ctx.scale * grad_queries.sum(1)  # (B, C)
                grad_keys = torch.baddbmm((grad_mean / keys.shape[-1]).unsqueeze(-1), queries.transpose(1, 2), grad_map)
            return _add_at_queries(grad_keys, query_ids, grad_queries.transpose(1, 2), ctx.scale)

        grad_keys_src = through_maps(grad_src, src, keys_src, mean_src, queries_src)
        grad_keys_tgt = through_maps(grad_tgt, tgt, keys_tgt, mean_tgt, queries_tgt)
        return grad_keys_src, grad_keys_tgt, None, None, None, None, None, None, None


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
    both are zeroed where ``b`` is below its ``(K // 4)``-th largest value (descending, 0-based),
    then, per row, ``mode="cos"`` takes ``rho(1 - cos(a, b))`` and ``mode="l1"`` takes
    ``rho(s * a - s * b)`` elementwise with ``s = K / (K // 4)``; ``rho`` is L1 when
    ``normalize=True`` and SmoothL1 (beta 1) otherwise. The mean is returned.

    Args:
        source: features of the input image ``(B, C, H, W)`` (the authors detach these).
        target: features of the translated image, same shape.
        query_ids: ``(n,)`` distinct flat positions shared by both maps.
        window: local window size or ``None`` for global keys.
        normalize: cosine maps (True) or the authors' ``tanh`` maps (False).
        mode: ``"cos"`` (default) or ``"l1"``.

    Returns:
        Scalar loss (float32 for low-precision inputs, else the input dtype).

    Example:
        >>> f_src, f_tgt = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
        >>> ids = sample_query_ids(6, 6, n=16, generator=torch.Generator().manual_seed(0))
        >>> spatial_correlative_loss(f_src, f_tgt, ids).shape
        torch.Size([])
    """
    _check_pair(source, target)
    _check_window(window)
    if mode not in ("cos", "l1"):
        raise ValueError(f"mode: expected 'cos' or 'l1', got {mode!r}")
    _, _, height, width = source.shape
    _check_query_ids(query_ids, height, width)
    query_ids = query_ids.to(source.device)
    key_ids = _key_ids(query_ids, height, width, window, source.shape[0])
    keys_per_map = height * width if key_ids is None else window * window
    if mode == "l1" and keys_per_map < 4:
        raise ValueError(f"mode='l1' needs at least 4 keys per map, got {keys_per_map}; use a larger window or map")
    if normalize:
        # Cosine maps: centre and unit-normalise every position (autograd takes that part).
        keys_src, keys_tgt, scale = _prepare(source, True).keys, _prepare(target, True).keys, 1.0
    else:
        # The authors' tanh maps: the Function centres inside and scales only the queries.
        keys_src, keys_tgt, scale = _flat(source), _flat(target), _tanh_query_scale(source.shape[1])
    squash = smooth = centre = not normalize
    return _StructureLoss.apply(keys_src, keys_tgt, centre, scale, query_ids, key_ids, squash, mode, smooth)


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
    _check_window(window)
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    _, _, height, width = source.shape
    _check_query_ids(query_ids, height, width)
    query_ids = query_ids.to(source.device)

    key_ids = _key_ids(query_ids, height, width, window, source.shape[0])

    def maps(features: Tensor) -> Tensor:
        prepared = _prepare(features, normalize)
        return F.normalize(_maps(_queries(prepared, query_ids), prepared, key_ids, not normalize), dim=-1)

    sim_source, sim_target, sim_other = maps(source), maps(target), maps(other)
    num_queries = sim_source.shape[1]
    positive_block = sim_source @ sim_target.transpose(1, 2)  # (B, n, n)
    source_other = sim_source @ sim_other.transpose(1, 2)
    target_other = sim_target @ sim_other.transpose(1, 2)
    logits = torch.cat([positive_block, source_other, target_other], dim=-1).flatten(0, 1) / temperature
    labels = torch.arange(num_queries, device=logits.device).repeat(source.shape[0])
    return F.cross_entropy(logits, labels)
