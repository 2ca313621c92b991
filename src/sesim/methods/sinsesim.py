"""Single-image translation with the spatially-correlative loss (the paper's painting -> photo
setting, after SinCUT): one source and one target image, random zoomed crops of each, StyleGAN2-
style generator and discriminator, the non-saturating GAN loss with an R1 penalty on real crops.

Configure with ``model.*.kind: stylegan2``, ``data.preprocess: zoom_and_crop`` and ``weights.r1``
(preset ``sinsesim``); the structure term is ``loss.structure`` as everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig, RunConfig
from sesim.errors import ConfigError
from sesim.losses.adversarial import d_nonsaturating_loss, g_nonsaturating_loss, r1_penalty
from sesim.losses.precision import at_least_float32
from sesim.methods.base import Frozen, Optimization, TranslationMethod


class SinSeSim(TranslationMethod):
    """Generator objective ``gan * softplus(-D(G(a))) + structure * L_structure(a, G(a))`` (+ identity
    L1); discriminator ``softplus(-D(b)) + softplus(D(G(a))) + r1 / 2 * ||grad D(b)||^2``."""

    @classmethod
    def check(cls, config: RunConfig) -> None:
        if config.loss.structure == "sesim" and config.loss.learned:
            raise ConfigError("sinsesim: learned heads are not supported here; use loss.learned=false")

    def build(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        self.build_networks(generator, discriminator, loss, optimization)
        self.replicas = {"generator": self.generator, "discriminator": self.discriminator}

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """D step (with R1 on the real crops), then the G step."""
        w, forward = self.weights, self.forward_context(real_a.device)
        with forward:
            fake_b = self.replicas["generator"](real_a)
        stats: dict[str, Tensor] = {}

        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        real = real_b.detach().requires_grad_(w.r1 > 0)
        with forward:
            scores_real = self.replicas["discriminator"](real)
            scores_fake = self.replicas["discriminator"](fake_b.detach())
            loss_d = d_nonsaturating_loss(at_least_float32(scores_real), at_least_float32(scores_fake))
        stats["d"] = loss_d.detach()
        if w.r1 > 0:
            penalty = r1_penalty(at_least_float32(scores_real), real)
            stats["r1"] = penalty.detach()
            loss_d = loss_d + w.r1 / 2 * penalty
        self.update("discriminator", loss_d)

        with Frozen(self.discriminator):
            self.optimizers["generator"].zero_grad(set_to_none=True)
            with forward:
                loss_gan = g_nonsaturating_loss(at_least_float32(self.discriminator(fake_b)))
                loss_structure = self.structure(real_a, fake_b, query_rng)
                loss_g = w.gan * loss_gan + w.structure * loss_structure
                if w.identity_l1:
                    loss_identity = F.l1_loss(at_least_float32(self.generator(real_b)), real_b)
                    stats["identity_l1"] = loss_identity.detach()
                    loss_g = loss_g + w.identity_l1 * loss_identity
            self.update("generator", loss_g)
        stats.update(g_gan=loss_gan.detach(), structure=loss_structure.detach(), g=loss_g.detach())
        return stats

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator, **self.structure.joint_modules()}
