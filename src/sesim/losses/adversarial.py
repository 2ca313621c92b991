"""Least-squares GAN objectives (Mao et al., 2017), as used by CycleGAN, CUT and SeSim."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def d_lsgan_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """``0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))``."""
    return 0.5 * (
        F.mse_loss(real_scores, real_scores.new_ones(()).expand_as(real_scores)) + fake_scores.square().mean()
    )


def g_lsgan_loss(fake_scores: Tensor) -> Tensor:
    """``mean((D(G(x)) - 1)^2)``: the generator wants its images scored as real."""
    return F.mse_loss(fake_scores, fake_scores.new_ones(()).expand_as(fake_scores))
