"""InfoNCE: the contrastive objective shared by CUT's PatchNCE, LSeSim's heads and the analysis."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sesim.losses.precision import at_least_float32


def info_nce(logits: Tensor, temperature: float) -> Tensor:
    """Cross-entropy of ``logits / temperature`` where query ``i``'s positive is column ``i``.

    Args:
        logits: ``(B, n, M)`` similarities of ``n`` queries to ``M >= n`` candidates per image; the
            first ``n`` candidates are the queries' positives in order, the rest negatives.
        temperature: ``T`` (0.07 in CUT and LSeSim).

    Returns:
        Scalar loss, averaged over the ``B * n`` queries (float32 for half-precision logits).

    Example:
        >>> confident = torch.eye(3)[None] * 10  # each query matches its own candidate best
        >>> bool(info_nce(confident, 1.0) < info_nce(confident.flip(-1), 1.0))
        True
    """
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    batch, queries = logits.shape[:2]
    labels = torch.arange(queries, device=logits.device).repeat(batch)
    return F.cross_entropy(at_least_float32(logits).flatten(0, 1) / temperature, labels)
