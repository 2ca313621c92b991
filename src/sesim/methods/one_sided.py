"""One-sided unpaired translation (``method: one_sided``): one generator A -> B, a PatchGAN, and a
structure term; with the spatially-correlative loss it is the paper's (Zheng, Cham, Cai, CVPR 2021).

FSeSim keeps content with similarity maps of fixed backbone features; LSeSim first trains
small heads on those features contrastively, then uses the maps of the heads. Appearance comes
from a PatchGAN under the least-squares objective. No cycle, no second generator.

The structure term is a switch (``loss.structure``): the same translator with CUT's PatchNCE is
CUT / FastCUT, with a perceptual loss or with none it is the usual ablation baselines; so the
method is named for its shape, not for one of its losses.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig
from sesim.data.jitter import ColourJitter
from sesim.losses import SpatialCorrelativeLoss
from sesim.losses.adversarial import g_lsgan_loss
from sesim.losses.precision import at_least_float32
from sesim.methods.base import Frozen, Optimization, TranslationMethod
from sesim.methods.pool import ImagePool


def rotate_180(images: Tensor) -> Tensor:
    return images.flip(2, 3)


class HeadObjective(nn.Module):
    """LSeSim's head objective as one module call, so DistributedDataParallel can wrap it (its only
    trainable parameters are the heads; the backbone inside is frozen)."""

    def __init__(self, structure: SpatialCorrelativeLoss, temperature: float) -> None:
        super().__init__()
        self.structure, self.temperature = structure, temperature

    def forward(self, source: Tensor, target: Tensor, other: Tensor, query_rng: torch.Generator | None) -> Tensor:
        return self.structure.contrastive(source, target, other, query_rng, self.temperature)


class OneSidedTranslation(TranslationMethod):
    """The one-sided translator and its training step.

    Args:
        generator, discriminator: network sections of the config.
        loss: the structure term (``structure`` switch; backbone, taps, window, learned heads ...).
        weights: loss weights (``gan``, ``structure`` for the structure term, identity terms).
        optimization: learning rate, Adam betas, image-pool size, seed of the pool.
        check_finite, autocast: see :class:`~sesim.methods.base.TranslationMethod`.
    """

    def build(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        self.build_networks(generator, discriminator, loss, optimization)
        self.augment = loss.augment
        self.flip_equivariance = loss.flip_equivariance
        self.jitter = ColourJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3)
        joint = self.structure.joint_modules()
        self.replicas = {"generator": self.generator, "discriminator": self.discriminator, **joint}
        if self.heads is not None:
            self.optimizers["heads"] = optimization.adam(self.heads)
            self.replicas["heads"] = HeadObjective(self.structure.loss, loss.temperature)
        self.pools = {"fake_b": ImagePool(optimization.pool_size, seed=optimization.seed)}

    @property
    def heads(self) -> nn.Module | None:
        return self.structure.heads

    def distribute(self, wrap, all_ranks_true, any_rank=None) -> None:
        super().distribute(wrap, all_ranks_true, any_rank)
        if "projector" in self.replicas:
            self.structure.use_replica(self.replicas["projector"])

    def _jitter(self, images: Tensor, groups: int = 1) -> Tensor:
        """Colour jitter of ``[-1, 1]`` images, done on the ``[0, 1]`` scale, drawn on their device
        (each of ``groups`` consecutive parts of the batch with its own factors)."""
        return self.jitter((images + 1) * 0.5, groups=groups) * 2 - 1

    def head_loss(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor, query_rng: torch.Generator | None) -> Tensor:
        """LSeSim's contrastive objective over three views: ``src = [A, A]``, ``tgt = [G(A), jitter(A)]``,
        ``other = rot180([B, jitter(B)])`` (positives share a structure, the rotated B does not)."""
        if self.augment:
            jittered_a, jittered_b = self._jitter(torch.cat([real_a, real_b]), groups=2).chunk(2)  # a draw each
            source = torch.cat([real_a, real_a])
            target = torch.cat([fake_b, jittered_a])
            other = rotate_180(torch.cat([real_b, jittered_b]))
        else:
            source, target, other = real_a, fake_b, rotate_180(real_b)
        return self.replicas["heads"](source, target, other, query_rng)

    def translate_for_training(self, real_a: Tensor, real_b: Tensor | None) -> tuple[Tensor, Tensor | None, bool]:
        """``G(A)`` (and ``G(B)`` for identity terms) in one call, and whether the inputs were
        mirrored. With flip equivariance (FastCUT, as CUT defines it), half the steps feed G the
        mirrored images; the translations stay as G made them (the discriminator sees
        ``G(flip(A))``) and the structure term mirrors the translation's features back."""
        # Python's generator: per process, saved in checkpoints (resuming stays exact), and drawing
        # from it asks nothing of the device (a tensor draw read with bool() would be a host sync).
        flipped = self.flip_equivariance and random.random() < 0.5
        images = real_a if real_b is None else torch.cat([real_a, real_b])
        translated = self.replicas["generator"](images.flip(3) if flipped else images)
        fake_b, identity_b = (translated, None) if real_b is None else translated.chunk(2)
        return fake_b, identity_b, flipped

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """One iteration in the authors' order: heads (LSeSim), then D, then G.

        Returns detached scalar tensors for logging (read them only when logging: no sync here).
        Forward passes run under autocast when configured; backward passes outside it.
        """
        w = self.weights
        forward = self.forward_context(real_a.device)
        with forward:
            fake_b, identity_b, flipped = self.translate_for_training(
                real_a, real_b if (w.identity_l1 or w.identity_structure) else None
            )
        stats: dict[str, Tensor] = {}

        if self.heads is not None:
            self.optimizers["heads"].zero_grad(set_to_none=True)
            with forward:
                aligned = fake_b.detach().flip(3) if flipped else fake_b.detach()  # positives share A's layout
                loss_heads = self.head_loss(real_a, real_b, aligned, query_rng)
            self.update("heads", loss_heads)
            stats["heads"] = loss_heads.detach()

        stats["d"] = self.lsgan_discriminator_step(real_b, fake_b)

        # The G step must not train D or the heads: freeze them and call the bare modules.
        with Frozen(self.discriminator, self.heads):
            self.optimizers["generator"].zero_grad(set_to_none=True)
            with forward:
                loss_gan = g_lsgan_loss(self.discriminator(fake_b))
                loss_structure = self.structure(real_a, fake_b, query_rng, flipped)
                # One kernel each way where a weight is 1 (w.gan in every preset).
                loss_g = torch.add(loss_gan if w.gan == 1 else w.gan * loss_gan, loss_structure, alpha=w.structure)
                if identity_b is not None:
                    if w.identity_l1:
                        same_b = identity_b.flip(3) if flipped else identity_b
                        loss_identity_l1 = F.l1_loss(at_least_float32(same_b), real_b)
                        stats["identity_l1"] = loss_identity_l1.detach()
                        loss_g = loss_g + w.identity_l1 * loss_identity_l1
                    if w.identity_structure:
                        loss_identity = self.structure(real_b, identity_b, query_rng, flipped)
                        stats["identity_structure"] = loss_identity.detach()
                        loss_g = loss_g + w.identity_structure * loss_identity
            self.update("generator", loss_g)
        stats.update(g_gan=loss_gan.detach(), structure=loss_structure.detach(), g=loss_g.detach())
        return stats

    def trained_modules(self) -> dict[str, nn.Module]:
        """Every network with learned weights (the backbone is excluded: it is fixed)."""
        modules = {"generator": self.generator, "discriminator": self.discriminator, **self.structure.joint_modules()}
        if self.heads is not None:
            modules["heads"] = self.heads
        return modules
