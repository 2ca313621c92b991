"""PatchNCE (Park et al., ECCV 2020, "Contrastive Learning for Unpaired Image-to-Image Translation").

A patch of the output should be closer to the input patch at the same position than to the
input's other sampled patches. Pure function on projected features; sampling and projection
happen outside.
"""

from __future__ import annotations

from torch import Tensor

from sesim.losses.info_nce import info_nce


def patch_nce_loss(query: Tensor, key: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE over sampled patches of one layer.

    ``logits[b, i, j] = q_bi . k_bj / T``; the positive of query ``i`` is key ``i`` (same
    position), the negatives are the other ``n - 1`` keys of the same image.

    Args:
        query: ``(B, n, D)`` L2-normalised features of the translated image (carry gradients).
        key: ``(B, n, D)`` L2-normalised features of the input at the same positions (pass them
            detached, as CUT does).
        temperature: ``T`` (0.07 in CUT).

    Returns:
        Scalar cross-entropy, averaged over the ``B * n`` queries.
    """
    if query.shape != key.shape or query.dim() != 3:
        raise ValueError(
            f"patch_nce_loss: query and key must be (B, n, D) alike, got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    return info_nce(query @ key.transpose(1, 2), temperature)
