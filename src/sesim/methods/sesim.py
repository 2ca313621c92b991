"""One-sided unpaired translation with the spatially-correlative loss (Zheng, Cham, Cai, CVPR 2021).

FSeSim keeps content with similarity maps of fixed backbone features; LSeSim first trains
small heads on those features contrastively, then uses the maps of the heads. Appearance comes
from a PatchGAN under the least-squares objective. No cycle, no second generator.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
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
    fused: bool = True  # one fused Adam kernel per optimizer step (CPU and CUDA)


class HeadObjective(nn.Module):
    """LSeSim's head objective as one module call, so DistributedDataParallel can wrap it (its only
    trainable parameters are the heads; the backbone inside is frozen)."""

    def __init__(self, structure: SpatialCorrelativeLoss, temperature: float) -> None:
        super().__init__()
        self.structure, self.temperature = structure, temperature

    def forward(self, source: Tensor, target: Tensor, other: Tensor, query_rng: torch.Generator | None) -> Tensor:
        return self.structure.contrastive(source, target, other, query_rng, self.temperature)


class SeSimTranslation(nn.Module):
    """The one-sided SeSim translator and its training step.

    Args:
        generator, discriminator: network sections of the config.
        loss: the structure term (backbone, taps, window, learned heads ...).
        weights: loss weights (``gan``, ``spatial``, identity terms).
        optimization: learning rate, Adam betas, image-pool size, seed of the pool.
        check_finite: raise :class:`NonFiniteLoss` before stepping on a NaN/Inf loss (one host
            sync per optimizer step).
        autocast: ``torch.bfloat16`` runs the forward passes under autocast (weights, optimizer
            states and the similarity maps stay float32); ``None`` is full precision.

    The training step calls its networks through :attr:`replicas`; :meth:`distribute` swaps in
    DistributedDataParallel wrappers there, while ``generator``, ``discriminator`` and ``heads``
    stay the bare modules (checkpoints, frozen uses, sampling).
    """

    def __init__(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        weights: WeightsConfig,
        optimization: Optimization = Optimization(),
        check_finite: bool = True,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.check_finite = check_finite
        self.autocast = autocast
        self.all_ranks_true: Callable[[Tensor], bool] = bool  # DDP: every process must agree
        self.generator = build_generator(generator)
        self.discriminator = build_discriminator(discriminator)
        self.structure = build_structure_loss(loss)
        self.weights = weights
        self.augment = loss.augment
        self.jitter = v2.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3)
        adam = {"lr": optimization.lr, "betas": optimization.betas, "fused": optimization.fused or None}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": torch.optim.Adam(self.generator.parameters(), **adam),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), **adam),
        }
        if self.structure.heads is not None:
            self.optimizers["heads"] = torch.optim.Adam(self.structure.heads.parameters(), **adam)
        self.pool = ImagePool(optimization.pool_size, seed=optimization.seed)
        self.replicas: dict[str, nn.Module] = {"generator": self.generator, "discriminator": self.discriminator}
        if self.heads is not None:
            self.replicas["heads"] = HeadObjective(self.structure, loss.temperature)

    def distribute(self, wrap: Callable[[nn.Module], nn.Module], all_ranks_true: Callable[[Tensor], bool]) -> None:
        """Route the gradient-carrying calls through ``wrap(module)`` (DistributedDataParallel);
        ``all_ranks_true`` makes the non-finite check a decision all processes share."""
        self.replicas = {name: wrap(module) for name, module in self.replicas.items()}
        self.all_ranks_true = all_ranks_true

    def _forward_context(self, device: torch.device):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    @property
    def heads(self) -> nn.Module | None:
        return self.structure.heads

    def _update(self, name: str, loss: Tensor) -> None:
        """Backward and step one optimizer (its gradients were zeroed by the caller)."""
        if self.check_finite and not self.all_ranks_true(torch.isfinite(loss)):
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
        return self.replicas["heads"](source, target, other, query_rng)

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """One iteration in the authors' order: heads (LSeSim), then D, then G.

        Returns detached scalar tensors for logging (read them only when logging: no sync here).
        Forward passes run under autocast when configured; backward passes outside it.
        """
        w = self.weights
        forward = self._forward_context(real_a.device)
        with forward:
            if w.identity_l1 or w.identity_spatial:  # G(A) and G(B) in one call (instance norm: per image)
                fake_b, identity_b = self.replicas["generator"](torch.cat([real_a, real_b])).chunk(2)
            else:
                fake_b, identity_b = self.replicas["generator"](real_a), None
        stats: dict[str, Tensor] = {}

        if self.heads is not None:
            self.optimizers["heads"].zero_grad(set_to_none=True)
            with forward:
                loss_heads = self.head_loss(real_a, real_b, fake_b.detach(), query_rng)
            self._update("heads", loss_heads)
            stats["heads"] = loss_heads.detach()

        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        with forward:  # real and (pooled) fake scored in one call
            scores_real, scores_fake = self.replicas["discriminator"](
                torch.cat([real_b, self.pool.query(fake_b.detach()).to(real_b.dtype)])
            ).chunk(2)
            loss_d = d_lsgan_loss(scores_real, scores_fake)
        self._update("discriminator", loss_d)
        stats["d"] = loss_d.detach()

        # The G step must not train D or the heads: freeze them (and call the bare modules), then restore.
        frozen = [self.discriminator] + ([self.heads] if self.heads is not None else [])
        for module in frozen:
            module.requires_grad_(False)
        try:
            self.optimizers["generator"].zero_grad(set_to_none=True)
            with forward:
                loss_gan = g_lsgan_loss(self.discriminator(fake_b))
                loss_spatial = self.structure(real_a, fake_b, query_rng)
                loss_g = w.gan * loss_gan + w.spatial * loss_spatial
                if identity_b is not None:
                    if w.identity_l1:
                        loss_identity_l1 = F.l1_loss(identity_b.float(), real_b)
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
