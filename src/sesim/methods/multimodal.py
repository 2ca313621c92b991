"""Multi-modal translation with the spatially-correlative loss (the paper's MUNIT setting, night ->
day and winter -> summer; its code was never released): one content, many appearances.

For a style code ``s ~ N(0, I)``, ``fake = G(E_c(a), s)``. Generator objective::

    gan * L_GAN(fake) + structure * L_structure(a, fake) + style_code * |E_s(fake) - s|
    + content_code * |E_c(fake) - E_c(a)| + reconstruction * |G(E_c(b), E_s(b)) - b|

The structure term holds every output to the input's layout whatever its style, which is what
lets the styles differ in appearance only. Diversity: LPIPS between outputs of one input
(``sesim translate --num-styles K`` then ``sesim eval --metrics lpips_diversity``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig, RunConfig
from sesim.errors import ConfigError
from sesim.losses.adversarial import g_lsgan_loss
from sesim.losses.precision import at_least_float32
from sesim.methods.base import Frozen, Optimization, TranslationMethod
from sesim.methods.pool import ImagePool


class _Passes(nn.Module):
    """Every generator pass of one step in one module call (one DDP forward per backward)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, real_a: Tensor, real_b: Tensor, style: Tensor) -> tuple[Tensor, ...]:
        g = self.generator
        content_a = g.content_encoder(real_a)
        fake_b = g.decode(content_a, style)
        reconstructed_b = g.decode(g.content_encoder(real_b), g.encode_style(real_b))
        return fake_b, content_a, g.encode_style(fake_b), g.content_encoder(fake_b), reconstructed_b


class Multimodal(TranslationMethod):
    @classmethod
    def check(cls, config: RunConfig) -> None:
        if config.model.generator.kind != "munit":
            raise ConfigError("multimodal: model.generator.kind must be munit")
        cls.check_fixed_structure("multimodal", config.loss)

    def build(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        self.build_networks(generator, discriminator, loss, optimization)
        self.replicas = {"generator": _Passes(self.generator), "discriminator": self.discriminator}
        self.pools = {"fake_b": ImagePool(optimization.pool_size, seed=optimization.seed)}

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """G step (styles drawn from the prior with the global generator: saved in checkpoints), then D."""
        w, forward = self.weights, self.forward_context(real_a.device)
        style = torch.randn(real_a.shape[0], self.generator.style_dim).to(real_a.device)
        stats: dict[str, Tensor] = {}
        with Frozen(self.discriminator):
            self.optimizers["generator"].zero_grad(set_to_none=True)
            with forward:
                fake_b, content_a, style_back, content_back, reconstructed_b = self.replicas["generator"](
                    real_a, real_b, style
                )
                loss_gan = g_lsgan_loss(self.discriminator(fake_b))
                loss_structure = self.structure(real_a, fake_b, query_rng)
                loss_style = F.l1_loss(at_least_float32(style_back), style)
                loss_content = F.l1_loss(at_least_float32(content_back), at_least_float32(content_a).detach())
                loss_reconstruction = F.l1_loss(at_least_float32(reconstructed_b), real_b)
                loss_g = (w.gan * loss_gan + w.structure * loss_structure + w.style_code * loss_style
                          + w.content_code * loss_content + w.reconstruction * loss_reconstruction)  # fmt: skip
            self.update("generator", loss_g)
        losses = {"g_gan": loss_gan, "structure": loss_structure, "style_code": loss_style,
                  "content_code": loss_content, "reconstruction": loss_reconstruction, "g": loss_g}  # fmt: skip
        stats.update({name: value.detach() for name, value in losses.items()})

        stats["d"] = self.lsgan_discriminator_step(real_b, fake_b)
        return stats

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}
