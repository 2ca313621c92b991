"""``nn.Module`` twins of the spatial losses: backbone features in, scalar loss out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sesim.backbones import FrozenBackbone, build_backbone, check_taps
from sesim.losses.fused import contrastive_spatial_loss_taps, spatial_correlative_loss_taps
from sesim.losses.heads import SimilarityHeads
from sesim.losses.spatial import (
    COMPARISONS,
    Mode,
    contrastive_spatial_loss,
    sample_query_ids,
    spatial_correlative_loss,
)

if TYPE_CHECKING:  # the loss is a library: importing it does not load the run's config schema (pydantic)
    from sesim.config import LossConfig


class SpatialCorrelativeLoss(nn.Module):
    """The spatially-correlative loss on images: FSeSim (fixed features) or LSeSim (learned heads).

    ``loss(source_images, translated_images)`` is the mean over taps of
    :func:`~sesim.losses.spatial_correlative_loss` between the backbone features of the two
    images, with fresh query ids per tap and per call. Source features carry no gradient; the
    backbone is frozen and shared; gradients reach the translated images.

    Args:
        backbone: a name in ``sesim.backbones.BACKBONES`` or a built :class:`FrozenBackbone`.
        taps: tap names of the backbone (paper: ``relu3_1, relu4_1, relu4_3``).
        window: local window size, or ``None`` for global similarity.
        normalize: cosine maps (True) or the authors' ``tanh`` maps (False).
        mode: ``"cos"`` or ``"l1"``.
        num_queries: queries per tap (``n``).
        heads: ``None`` (FSeSim), a :class:`SimilarityHeads`, or ``True`` to build heads for
            ``taps`` (LSeSim; train them with :meth:`contrastive`).
        weights: pretrained weights for a backbone given by name (see ``build_backbone``).
        fused: compute all taps at once (:mod:`sesim.losses.fused`; the same values in far fewer
            kernels), or tap by tap with the readable functions (``False``).

    Example:
        >>> loss_fn = SpatialCorrelativeLoss("vgg16", weights="random")  # doctest: +SKIP
        >>> loss = loss_fn(real_a, fake_b)  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str | FrozenBackbone = "vgg16",
        taps: Sequence[str] = ("relu3_1", "relu4_1", "relu4_3"),
        window: int | None = None,
        normalize: bool = False,
        mode: Mode = "cos",
        num_queries: int = 256,
        heads: SimilarityHeads | bool | None = None,
        weights: str | os.PathLike = "imagenet",
        fused: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(backbone, str):
            backbone = build_backbone(backbone, weights=weights)
        if mode not in COMPARISONS:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, COMPARISONS))}, got {mode!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"window: expected None (global) or an integer >= 1, got {window!r}")
        if num_queries < 1:
            raise ValueError(f"num_queries: must be >= 1, got {num_queries}")
        self.backbone = backbone
        self.taps = check_taps(taps, backbone.taps, backbone.name)
        if heads is True:
            heads = SimilarityHeads(backbone.channels(self.taps))
        elif heads is False:
            heads = None
        if heads is not None:
            missing = [tap for tap in self.taps if tap not in heads.taps]
            if missing:
                raise ValueError(
                    f"heads: no head for tap(s) {', '.join(missing)}; heads exist for {', '.join(heads.taps)}"
                )
        self.heads = heads
        self.window = window
        self.normalize = normalize
        self.mode = mode
        self.num_queries = num_queries
        self.fused = fused

    @classmethod
    def from_config(cls, config: LossConfig) -> SpatialCorrelativeLoss:
        """The loss a run's ``loss`` section describes (heads built when ``learned``)."""
        return cls(
            backbone=config.backbone, taps=tuple(config.taps), window=config.window, normalize=config.normalize,
            mode=config.mode, num_queries=config.num_queries, heads=config.learned, weights=config.backbone_weights,
        )  # fmt: skip

    def features(self, images: Tensor, grad: bool = True) -> dict[str, Tensor]:
        """Backbone features at ``self.taps`` (``(B, C, H, W)`` each), without heads."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.backbone(images, self.taps)

    def project(self, tap: str, features: Tensor) -> Tensor:
        """One tap's features through its head (LSeSim), or unchanged (FSeSim)."""
        return features if self.heads is None else self.heads(tap, features)

    def _query_ids(self, features: Tensor, generator: torch.Generator | None) -> Tensor:
        _, _, height, width = features.shape
        return sample_query_ids(height, width, self.num_queries, generator=generator, device=features.device)

    def forward(
        self, source_images: Tensor, translated_images: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Structure loss between ``(B, 3, H, W)`` images in ``[-1, 1]``; the mean over taps."""
        if source_images.shape != translated_images.shape:
            raise ValueError(
                "source and translated images differ in shape: "
                f"{tuple(source_images.shape)} vs {tuple(translated_images.shape)}"
            )
        source = self.features(source_images, grad=False)
        translated = self.features(translated_images)
        if self.fused:
            with torch.no_grad():
                sources = [self.project(tap, source[tap]) for tap in self.taps]
            ids = [self._query_ids(features, generator) for features in sources]
            targets = [self.project(tap, translated[tap]) for tap in self.taps]
            return spatial_correlative_loss_taps(sources, targets, ids, self.window, self.normalize, self.mode)
        losses = []
        for tap in self.taps:
            with torch.no_grad():
                source_tap = self.project(tap, source[tap])
            ids = self._query_ids(source_tap, generator)
            losses.append(
                spatial_correlative_loss(
                    source_tap, self.project(tap, translated[tap]), ids, self.window, self.normalize, self.mode
                )
            )
        return torch.stack(losses).mean()

    def contrastive(
        self,
        source_images: Tensor,
        target_images: Tensor,
        other_images: Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 0.07,
    ) -> Tensor:
        """LSeSim's head objective: mean over taps of :func:`~sesim.losses.contrastive_spatial_loss`.

        The backbone runs without gradient; only the heads learn. ``source`` and ``target``
        share a structure, ``other`` does not (the paper: a rotated target-domain image).
        """
        if self.heads is None:
            raise ValueError("contrastive: this loss has no heads; build it with heads=True for LSeSim")
        views = torch.cat([source_images, target_images, other_images])
        features = self.features(views, grad=False)
        if self.fused:
            projected = [self.heads(tap, features[tap]) for tap in self.taps]
            ids = [self._query_ids(views, generator) for views in projected]
            return contrastive_spatial_loss_taps(projected, ids, self.window, self.normalize, temperature)
        losses = []
        for tap in self.taps:
            projected = self.heads(tap, features[tap])
            source, target, other = projected.chunk(3)
            ids = self._query_ids(projected, generator)
            losses.append(
                contrastive_spatial_loss(source, target, other, ids, self.window, self.normalize, temperature)
            )
        return torch.stack(losses).mean()
