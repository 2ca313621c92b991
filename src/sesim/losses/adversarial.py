"""GAN objectives: least squares (Mao et al., 2017; CycleGAN, CUT, SeSim) and the non-saturating
logistic loss with R1 (StyleGAN2; single-image translation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_lsgan_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """``0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))``."""
    return 0.5 * (
        F.mse_loss(real_scores, real_scores.new_ones(()).expand_as(real_scores)) + fake_scores.square().mean()
    )


def d_lsgan_loss_stacked(scores: Tensor) -> Tensor:
    """:func:`d_lsgan_loss` of real and fake images scored in one call, ``scores`` being the real
    half followed by the fake half (equal sizes): the same value as one mean of ``(D(x) - t)^2``
    with ``t = 1, 0`` per half, one kernel each way instead of six.

    Example:
        >>> real, fake = torch.rand(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
        >>> bool(torch.isclose(d_lsgan_loss_stacked(torch.cat([real, fake])), d_lsgan_loss(real, fake)))
        True
    """
    halves = scores.unflatten(0, (2, -1))
    targets = torch.arange(1, -1, -1, dtype=torch.float32, device=scores.device)  # real 1, fake 0
    return F.mse_loss(halves, targets.view(2, *[1] * (halves.dim() - 1)).expand_as(halves))


def g_lsgan_loss(fake_scores: Tensor) -> Tensor:
    """``mean((D(G(x)) - 1)^2)``: the generator wants its images scored as real."""
    return F.mse_loss(fake_scores, fake_scores.new_ones(()).expand_as(fake_scores))


def d_nonsaturating_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """``softplus(-D(real)) + softplus(D(fake))``, averaged (StyleGAN2's logistic loss)."""
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def g_nonsaturating_loss(fake_scores: Tensor) -> Tensor:
    """``softplus(-D(G(x)))``, averaged."""
    return F.softplus(-fake_scores).mean()


def r1_penalty(real_scores: Tensor, real_images: Tensor) -> Tensor:
    """R1 (Mescheder et al., 2018): ``E ||grad_x D(x)||^2`` on real images (which must require grad);
    the caller weights it with ``gamma / 2``."""
    (grad,) = torch.autograd.grad(real_scores.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()
