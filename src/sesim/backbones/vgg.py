"""ImageNet VGG16 with named ReLU taps, the paper's fixed feature extractor (FSeSim)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor, nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from sesim.backbones.base import FrozenBackbone
from sesim.backbones.weights import cached_or_download, hub_checkpoint_path, load_state_dict_file
from sesim.files import VGG16_FILE

# Index in ``vgg16().features`` of each ReLU output, and its channel count.
VGG16_TAPS: dict[str, tuple[int, int]] = {
    "relu1_1": (1, 64), "relu1_2": (3, 64),
    "relu2_1": (6, 128), "relu2_2": (8, 128),
    "relu3_1": (11, 256), "relu3_2": (13, 256), "relu3_3": (15, 256),
    "relu4_1": (18, 512), "relu4_2": (20, 512), "relu4_3": (22, 512),
    "relu5_1": (25, 512), "relu5_2": (27, 512), "relu5_3": (29, 512),
}  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(FrozenBackbone):
    """torchvision's VGG16 ``features`` with taps ``relu1_1`` ... ``relu5_3``.

    The paper's taps ``relu3_1, relu4_1, relu4_3`` give ``(256, H/4, W/4), (512, H/8, W/8),
    (512, H/8, W/8)``. Only the layers up to the deepest requested tap run.

    Args:
        weights: ``"imagenet"`` (the torch hub cache file ``vgg16-397923af.pth``, else
            torchvision's download), a path to a state dict file, or ``"random"`` (tests and
            timing only; never chosen silently).
    """

    name = "vgg16"
    tap_channels: ClassVar[Mapping[str, int]] = {tap: channels for tap, (_, channels) in VGG16_TAPS.items()}

    def __init__(self, weights: str | os.PathLike = "imagenet") -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        self.features = make_layers(cfgs["D"], batch_norm=False)
        for layer in self.features:
            if isinstance(layer, nn.ReLU):
                # Taps are ReLU outputs that later layers read: keep them unmodified.
                layer.inplace = False
        if weights != "random":
            state = _vgg16_state(weights)
            features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            self.features.load_state_dict(features or state)
        self.freeze()

    def _run(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        by_index = {VGG16_TAPS[tap][0]: tap for tap in wanted}
        last = max(by_index)
        found = {}
        for index, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if index in by_index:
                found[by_index[index]] = x
        return found


def _vgg16_state(weights: str | os.PathLike) -> dict:
    what = "vgg16"
    if weights != "imagenet":
        return load_state_dict_file(weights, what)
    hint = (
        f"put {VGG16_FILE} in {hub_checkpoint_path(VGG16_FILE).parent} or pass the file's path as weights, "
        "or choose the offline backbone efficientnet_lite0"
    )
    return cached_or_download(VGG16_Weights.IMAGENET1K_V1.url, VGG16_FILE, what, hint)
