"""Frozen, pretrained feature extractors with named taps.

``BACKBONES`` maps a name to its class; :func:`build_backbone` builds one by name.
"""

from __future__ import annotations

import os

from sesim.backbones.base import FrozenBackbone, check_taps
from sesim.backbones.efficientnet import EfficientNetLite0Features
from sesim.backbones.vgg import VGG16Features
from sesim.errors import ConfigError, WeightsUnavailableError

BACKBONES: dict[str, type[FrozenBackbone]] = {
    "vgg16": VGG16Features,
    "efficientnet_lite0": EfficientNetLite0Features,
}

# Each backbone's counterpart of the paper's relu3_1 / relu4_1 / relu4_3.
DEFAULT_TAPS: dict[str, tuple[str, ...]] = {
    "vgg16": ("relu3_1", "relu4_1", "relu4_3"),
    "efficientnet_lite0": ("stage2", "stage3", "stage5"),
}


def build_backbone(name: str, weights: str | os.PathLike = "imagenet") -> FrozenBackbone:
    """Build a frozen extractor by name.

    Args:
        name: a key of ``BACKBONES``.
        weights: ``"imagenet"``, a path to a state dict file, or ``"random"``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
        WeightsUnavailableError: the pretrained weights cannot be found or fetched.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name](weights=weights)


__all__ = [
    "BACKBONES",
    "DEFAULT_TAPS",
    "EfficientNetLite0Features",
    "FrozenBackbone",
    "VGG16Features",
    "WeightsUnavailableError",
    "build_backbone",
    "check_taps",
]
