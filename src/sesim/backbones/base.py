"""What every frozen feature extractor shares: named taps, input normalisation, freezing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from sesim.errors import ConfigError


def check_taps(requested: Iterable[str], valid: Sequence[str], owner: str) -> tuple[str, ...]:
    """Return ``requested`` as a tuple, or raise ``ConfigError`` (a ``ValueError``) listing the valid names."""
    if isinstance(requested, str):
        requested = (requested,)
    taps = tuple(requested)
    if not taps:
        raise ConfigError(f"{owner}: no taps requested; valid taps: {', '.join(valid)}")
    unknown = [tap for tap in taps if tap not in valid]
    if unknown:
        raise ConfigError(f"{owner}: unknown tap(s) {', '.join(map(repr, unknown))}; valid taps: {', '.join(valid)}")
    return taps


class FrozenBackbone(nn.Module):
    """A pretrained network used only as a fixed feature extractor.

    Subclasses define ``name``, ``tap_channels`` (an ordered dict tap -> channels, shallow to
    deep), the input normalisation buffers ``mean``/``std`` (0-1 scale) and ``_run``. Inputs are
    images in ``[-1, 1]``; the extractor stays in eval mode with no parameter gradients, while
    gradients still flow through it into its input (the translated image).
    """

    name: ClassVar[str] = "backbone"
    tap_channels: ClassVar[Mapping[str, int]]

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # The same map as x * scale + shift, one kernel each way in a training step.
        self.register_buffer("input_scale", 0.5 / self.std, persistent=False)
        self.register_buffer("input_shift", (0.5 - self.mean) / self.std, persistent=False)

    @property
    def taps(self) -> tuple[str, ...]:
        """Every valid tap name, shallow to deep."""
        return tuple(self.tap_channels)

    def channels(self, taps: Iterable[str]) -> dict[str, int]:
        """Channel count of each requested tap, known without a forward pass."""
        return {tap: self.tap_channels[tap] for tap in check_taps(taps, self.taps, self.name)}

    def freeze(self) -> FrozenBackbone:
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FrozenBackbone:
        # A frozen extractor never leaves eval mode (batch-norm statistics, dropout).
        return super().train(False)

    def normalize_input(self, images: Tensor) -> Tensor:
        """``[-1, 1]`` images -> the network's expected input: ``((x + 1) / 2 - mean) / std``,
        computed as one ``x * a + b`` (one kernel forward and backward instead of four)."""
        return torch.addcmul(self.input_shift.to(images.dtype), images, self.input_scale.to(images.dtype))

    def forward(self, images: Tensor, taps: Iterable[str]) -> dict[str, Tensor]:
        """Features at the requested taps.

        Args:
            images: ``(B, 3, H, W)`` in ``[-1, 1]``.
            taps: tap names; the network runs only up to the deepest one.

        Returns:
            ``{tap: (B, C_tap, H_tap, W_tap)}`` in the order requested.
        """
        taps = check_taps(taps, self.taps, self.name)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        found = self._run(self.normalize_input(images), set(taps))
        return {tap: found[tap] for tap in taps}

    def _run(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        raise NotImplementedError
