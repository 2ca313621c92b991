"""The one-sided translator's generator: a ResNet with anti-aliased resampling."""

from __future__ import annotations

from torch import Tensor, nn

from sesim.errors import ConfigError
from sesim.networks.layers import BlurDownsample, BlurUpsample, init_weights


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


class ResidualBlock(nn.Module):
    """``x + [pad, conv3, IN, ReLU, pad, conv3, IN](x)`` with reflection padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet generator (Johnson et al.; CUT/F-LSeSim variant).

    7x7 stem, two stride-2 down-samplings, ``blocks`` residual blocks, two up-samplings, 7x7 head
    with tanh. Instance norm without affine, reflection padding. With ``antialias=True`` the
    resampling is a stride-1 conv followed by a blur-pool (down) or a blur-upsample followed by a
    stride-1 conv (up). Input height and width must be multiples of 4.

    Args:
        ngf: width of the first layer (64 in the paper).
        blocks: residual blocks (9 in the paper).
        antialias: blur-pool resampling (True in the paper) or strided convolutions.
    """

    def __init__(self, ngf: int = 64, blocks: int = 9, antialias: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU()]
        width = ngf
        for _ in range(2):
            if antialias:
                layers += [nn.Conv2d(width, width * 2, 3, padding=1), _norm(width * 2), nn.ReLU()]
                layers += [BlurDownsample(width * 2)]
            else:
                layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1), _norm(width * 2), nn.ReLU()]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(blocks)]
        for _ in range(2):
            if antialias:
                layers += [BlurUpsample(width), nn.Conv2d(width, width // 2, 3, padding=1)]
            else:
                layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1)]
            layers += [_norm(width // 2), nn.ReLU()]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)
        # Named encoder taps, as {name: (index of the layer whose output it is, channels)}: the
        # padded input, the stem, each down-sampling stage's raw convolution (``downK_conv``, before
        # its norm and blur-pool: CUT's PatchNCE layers 4 and 8), each stage's output (``downK``)
        # and each residual block. CUT's five: input, down1_conv, down2_conv, block1, block5.
        self.taps: dict[str, tuple[int, int]] = {"input": (0, in_channels), "stem": (3, ngf)}
        index = 3
        for stage in (1, 2):
            self.taps[f"down{stage}_conv"] = (index + 1, ngf * 2**stage)
            index += 4 if antialias else 3
            self.taps[f"down{stage}"] = (index, ngf * 2**stage)
        for block in range(1, blocks + 1):
            self.taps[f"block{block}"] = (index + block, ngf * 4)

    def tap_channels(self, taps) -> dict[str, int]:
        """Channels of named encoder taps; an unknown name lists the valid ones."""
        unknown = [tap for tap in taps if tap not in self.taps]
        if unknown:
            raise ConfigError(f"generator: unknown tap(s) {', '.join(unknown)}; valid taps: {', '.join(self.taps)}")
        return {tap: self.taps[tap][1] for tap in taps}

    def encode(self, images: Tensor, taps) -> dict[str, Tensor]:
        """Encoder features at the named taps (runs only as deep as the deepest tap)."""
        wanted = {self.taps[tap][0]: tap for tap in self.tap_channels(taps)}
        found, x = {}, images
        for index, layer in enumerate(self.model[: max(wanted) + 1]):
            x = layer(x)
            if index in wanted:
                found[wanted[index]] = x
        return {tap: found[tap] for tap in taps}

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> same shape in ``[-1, 1]``; ``H, W`` multiples of 4."""
        return self.model(images)
