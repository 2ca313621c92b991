"""CUT's patch projector: one two-layer MLP per generator tap, built eagerly."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn


class PatchProjector(nn.Module):
    """Per tap: ``Linear(C, dim), ReLU, Linear(dim, dim)``, then L2 normalisation.

    Args:
        channels: ``{tap: C}`` of the generator taps (``generator.tap_channels(taps)``).
        dim: projection width (256 in CUT).
    """

    def __init__(self, channels: Mapping[str, int], dim: int = 256) -> None:
        super().__init__()
        if not channels:
            raise ValueError("PatchProjector: channels is empty; pass {tap: channel count}")
        self.mlps = nn.ModuleDict(
            {
                tap: nn.Sequential(nn.Linear(width, dim), nn.ReLU(), nn.Linear(dim, dim))
                for tap, width in channels.items()
            }
        )
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight, gain=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, patches: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{tap: (B, n, C)}`` -> ``{tap: (B, n, dim)}``, unit length (one call for all taps)."""
        return {tap: F.normalize(self.mlps[tap](x), dim=-1) for tap, x in patches.items()}
