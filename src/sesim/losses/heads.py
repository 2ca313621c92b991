"""LSeSim's learned similarity heads: one small 1x1-conv MLP per backbone tap."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


def head_width(channels: int) -> int:
    """Hidden and output width of a head: ``max(32, C // 4)`` as in the paper's code."""
    return max(32, channels // 4)


class SimilarityHeads(nn.Module):
    """Per tap: ``1x1 conv C -> D, ReLU, 1x1 conv D -> D`` with ``D = max(32, C // 4)``.

    Built eagerly from known channel counts (no first-batch initialisation), weights
    ``normal(0, 0.02)``, zero bias. The similarity maps of LSeSim are computed on its outputs.

    Args:
        channels: ``{tap: C}``, e.g. ``backbone.channels(taps)``.
    """

    def __init__(self, channels: Mapping[str, int]) -> None:
        super().__init__()
        if not channels:
            raise ValueError("SimilarityHeads: channels is empty; pass {tap: channel count}")
        self.heads = nn.ModuleDict()
        for tap, width in channels.items():
            if width < 1:
                raise ValueError(f"SimilarityHeads: tap {tap!r} has {width} channels")
            hidden = head_width(width)
            head = nn.Sequential(nn.Conv2d(width, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1))
            for layer in (head[0], head[2]):
                nn.init.normal_(layer.weight, 0.0, 0.02)
                nn.init.zeros_(layer.bias)
            self.heads[tap] = head

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def forward(self, tap: str, features: Tensor) -> Tensor:
        """Project one tap's features ``(B, C, H, W) -> (B, D, H, W)``."""
        if tap not in self.heads:
            raise ValueError(f"SimilarityHeads: no head for tap {tap!r}; heads exist for {', '.join(self.heads)}")
        return self.heads[tap](features)
