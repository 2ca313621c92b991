"""The 70x70 PatchGAN discriminator, anti-aliased as in CUT / F-LSeSim."""

from __future__ import annotations

from torch import Tensor, nn

from sesim.networks.layers import BlurDownsample, init_weights


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs, LeakyReLU 0.2, instance norm after the first layer.

    With ``layers=3`` each output sees a 70x70 input patch (without anti-aliasing). With
    ``antialias=True`` every stride-2 conv becomes a stride-1 conv and a blur-pool.

    Args:
        ndf: width of the first layer (64 in the paper).
        layers: number of down-sampling layers (3 in the paper).
    """

    def __init__(self, ndf: int = 64, layers: int = 3, antialias: bool = True, in_channels: int = 3) -> None:
        super().__init__()

        def down(c_in: int, c_out: int, norm: bool) -> list[nn.Module]:
            stride = 1 if antialias else 2
            block: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)]
            if norm:
                block.append(nn.InstanceNorm2d(c_out))
            block.append(nn.LeakyReLU(0.2))
            if antialias:
                block.append(BlurDownsample(c_out))
            return block

        model = down(in_channels, ndf, norm=False)
        width = ndf
        for n in range(1, layers):
            next_width = ndf * min(2**n, 8)
            model += down(width, next_width, norm=True)
            width = next_width
        last = ndf * min(2**layers, 8)
        model += [nn.Conv2d(width, last, 4, padding=1), nn.InstanceNorm2d(last), nn.LeakyReLU(0.2)]
        model += [nn.Conv2d(last, 1, 4, padding=1)]
        self.model = nn.Sequential(*model)
        init_weights(self)

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> patch scores ``(B, 1, H', W')`` (real > 0.5 under LSGAN)."""
        return self.model(images)
