"""LSeSim's colour jitter on the device equals torchvision's adjustments for the same factors."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from sesim.data.jitter import ColourJitter

pytestmark = pytest.mark.numerics


def torchvision_jitter(images, factors):
    brightness, contrast, saturation, hue = factors
    images = TF.adjust_brightness(images, brightness)
    images = TF.adjust_contrast(images, contrast)
    images = TF.adjust_saturation(images, saturation)
    return TF.adjust_hue(images, hue)


def test_each_group_is_torchvisions_jitter_with_its_factors():
    images = torch.rand(4, 3, 12, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images[0, :, 0, 0] = 0.5  # grey: no hue
    images[1, :, 0, 0] = 0.0  # black: no saturation
    images[2, :, 0, 0] = torch.tensor([0.7, 0.7, 0.2], dtype=torch.float64)  # a tie for the maximum
    factors = torch.tensor([[1.3, 0.6, 1.4, 0.27], [0.6, 1.45, 0.55, -0.3]], dtype=torch.float64)
    jittered = ColourJitter().double()(images, factors)
    for group, row in enumerate(factors.tolist()):
        expected = torchvision_jitter(images[2 * group : 2 * group + 2], row)
        assert (jittered[2 * group : 2 * group + 2] - expected).abs().max() < 1e-5


def test_factors_are_drawn_per_group_within_their_ranges():
    torch.manual_seed(0)
    jitter = ColourJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3)
    factors = jitter.factors(groups=500)
    assert factors.shape == (500, 4)
    assert (factors[:, :3] >= 0.5).all() and (factors[:, :3] <= 1.5).all()
    assert (factors[:, 3].abs() <= 0.3).all() and factors[:, 3].min() < -0.25 and factors[:, 3].max() > 0.25
    images = torch.rand(4, 3, 8, 8)
    out = jitter(images, groups=2)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[:2] - images[:2], out[2:] - images[2:])  # two draws
