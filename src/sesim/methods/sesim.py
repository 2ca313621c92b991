"""One-sided unpaired translation with the spatially-correlative loss (Zheng, Cham, Cai, CVPR 2021).

FSeSim keeps content with similarity maps of fixed backbone features; LSeSim first trains
small heads on those features contrastively, then uses the maps of the heads. Appearance comes
from a PatchGAN under the least-squares objective. No cycle, no second generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig, WeightsConfig
from sesim.losses import SpatialCorrelativeLoss
from sesim.losses.adversarial import d_lsgan_loss, g_lsgan_loss
from sesim.methods.pool import ImagePool
from sesim.networks import PatchDiscriminator, ResnetGenerator


def build_generator(config: GeneratorConfig) -> ResnetGenerator:
    return ResnetGenerator(ngf=config.ngf, blocks=config.blocks, antialias=config.antialias)


def build_discriminator(config: DiscriminatorConfig) -> PatchDiscriminator:
    return PatchDiscriminator(ndf=config.ndf, layers=config.layers, antialias=config.antialias)


def build_structure_loss(config: LossConfig) -> SpatialCorrelativeLoss:
    return SpatialCorrelativeLoss(
        backbone=config.backbone,
        taps=tuple(config.taps),
        window=config.window,
        normalize=config.normalize,
        mode=config.mode,
        num_queries=config.num_queries,
        heads=config.learned,
        weights=config.backbone_weights,
    )


class NonFiniteLoss(ArithmeticError):
    """A loss was NaN or infinite; raised before that loss's optimizer changed any weight."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(f"non-finite {name} loss ({value})")
        self.name, self.value = name, value


def rotate_180(images: Tensor) -> Tensor:
    return images.flip(2, 3)


@dataclass(frozen=True)
class Optimization:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    pool_size: int = 50
    seed: int = 0


class SeSimTranslation(nn.Module):
    """The one-sided SeSim translator and its training step.

    Args:
        generator, discriminator: network sections of the config.
        loss: the structure term (backbone, taps, window, learned heads ...).
        weights: loss weights (``gan``, ``spatial``, identity terms).
        optimization: learning rate, Adam betas, image-pool size, seed of the pool.
        check_finite: raise :class:`NonFiniteLoss` before stepping on a NaN/Inf loss (one host
            sync per optimizer step).
    """

    def __init__(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        weights: WeightsConfig,
        optimization: Optimization = Optimization(),
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        self.check_finite = check_finite
        self.generator = build_generator(generator)
        self.discriminator = build_discriminator(discriminator)
        self.structure = build_structure_loss(loss)
        self.weights = weights
        self.augment = loss.augment
        self.temperature = loss.temperature
        self.jitter = v2.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3)
        adam = {"lr": optimization.lr, "betas": optimization.betas}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": torch.optim.Adam(self.generator.parameters(), **adam),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), **adam),
        }
        if self.structure.heads is not None:
            self.optimizers["heads"] = torch.optim.Adam(self.structure.heads.parameters(), **adam)
        self.pool = ImagePool(optimization.pool_size, seed=optimization.seed)

    @property
    def heads(self) -> nn.Module | None:
        return self.structure.heads

    def _update(self, name: str, loss: Tensor) -> None:
        """Backward and step one optimizer (its gradients were zeroed by the caller)."""
        if self.check_finite and not bool(torch.isfinite(loss)):
            raise NonFiniteLoss(name, loss.detach().item())
        loss.backward()
        self.optimizers[name].step()

    def _jitter(self, images: Tensor) -> Tensor:
        """Colour jitter of ``[-1, 1]`` images, done on the ``[0, 1]`` scale."""
        return self.jitter((images + 1) * 0.5) * 2 - 1

    def head_loss(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor, query_rng: torch.Generator | None) -> Tensor:
        """LSeSim's contrastive objective over three views: ``src = [A, A]``, ``tgt = [G(A), jitter(A)]``,
        ``other = rot180([B, jitter(B)])`` (positives share a structure, the rotated B does not)."""
        if self.augment:
            source = torch.cat([real_a, real_a])
            target = torch.cat([fake_b, self._jitter(real_a)])
            other = rotate_180(torch.cat([real_b, self._jitter(real_b)]))
        else:
            source, target, other = real_a, fake_b, rotate_180(real_b)
        return self.structure.contrastive(source, target, other, query_rng, self.temperature)

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """One iteration in the authors' order: heads (LSeSim), then D, then G.

        Returns detached scalar tensors for logging (read them only when logging: no sync here).
        """
        w = self.weights
        fake_b = self.generator(real_a)
        identity_b = self.generator(real_b) if (w.identity_l1 or w.identity_spatial) else None
        stats: dict[str, Tensor] = {}

        if self.heads is not None:
            self.optimizers["heads"].zero_grad(set_to_none=True)
            loss_heads = self.head_loss(real_a, real_b, fake_b.detach(), query_rng)
            self._update("heads", loss_heads)
            stats["heads"] = loss_heads.detach()

        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        loss_d = d_lsgan_loss(self.discriminator(real_b), self.discriminator(self.pool.query(fake_b.detach())))
        self._update("discriminator", loss_d)
        stats["d"] = loss_d.detach()

        # The G step must not train D or the heads: freeze them, then restore.
        frozen = [self.discriminator] + ([self.heads] if self.heads is not None else [])
        for module in frozen:
            module.requires_grad_(False)
        try:
            self.optimizers["generator"].zero_grad(set_to_none=True)
            loss_gan = g_lsgan_loss(self.discriminator(fake_b))
            loss_spatial = self.structure(real_a, fake_b, query_rng)
            loss_g = w.gan * loss_gan + w.spatial * loss_spatial
            if identity_b is not None:
                if w.identity_l1:
                    loss_identity_l1 = F.l1_loss(identity_b, real_b)
                    stats["identity_l1"] = loss_identity_l1.detach()
                    loss_g = loss_g + w.identity_l1 * loss_identity_l1
                if w.identity_spatial:
                    loss_identity = self.structure(real_b, identity_b, query_rng)
                    stats["identity_spatial"] = loss_identity.detach()
                    loss_g = loss_g + w.identity_spatial * loss_identity
            self._update("generator", loss_g)
        finally:
            for module in frozen:
                module.requires_grad_(True)
        stats.update(g_gan=loss_gan.detach(), spatial=loss_spatial.detach(), g=loss_g.detach())
        return stats

    def trained_modules(self) -> dict[str, nn.Module]:
        """Every network with learned weights (the backbone is excluded: it is fixed)."""
        modules = {"generator": self.generator, "discriminator": self.discriminator}
        if self.heads is not None:
            modules["heads"] = self.heads
        return modules
