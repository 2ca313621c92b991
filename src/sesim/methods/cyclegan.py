"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017): two generators and two discriminators, cycle
consistency and identity losses, LSGAN. An optional structure term (``loss.structure``, weight
``weights.structure``, 0 by default) adds e.g. the spatially-correlative loss to both directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig, RunConfig
from sesim.losses.adversarial import d_lsgan_loss, g_lsgan_loss
from sesim.losses.precision import at_least_float32
from sesim.methods.base import Frozen, Optimization, TranslationMethod
from sesim.methods.pool import ImagePool
from sesim.methods.structure import NoTerm, build_structure_term
from sesim.networks import build_discriminator, build_generator


def _l1(output: Tensor, target: Tensor) -> Tensor:
    """L1 of a (possibly autocast) output against its target, reduced in at least float32."""
    return F.l1_loss(at_least_float32(output), target)


class CycleGAN(TranslationMethod):
    """``generator``: A -> B, ``generator_ba``: B -> A; ``discriminator`` judges B, ``discriminator_a`` judges A.

    Generator objective (both directions)::

        gan * (L_GAN(G_AB) + L_GAN(G_BA)) + cycle * (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|)
        + identity_l1 * (|G_AB(b) - b| + |G_BA(a) - a|) + structure * (L_s(a, G_AB(a)) + L_s(b, G_BA(b)))

    ``identity_l1`` is an absolute weight (CycleGAN's 0.5 x lambda = 5 with cycle 10).
    """

    @classmethod
    def check(cls, config: RunConfig) -> None:
        cls.check_fixed_structure("cyclegan", config.loss)

    def build(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        self.generator, self.generator_ba = build_generator(generator), build_generator(generator)
        self.discriminator, self.discriminator_a = (
            build_discriminator(discriminator),
            build_discriminator(discriminator),
        )
        self.structure = build_structure_term(loss, self.generator) if self.weights.structure else NoTerm()
        self.optimizers = {
            "generator": optimization.adam(self.generator, self.generator_ba),
            "discriminator": optimization.adam(self.discriminator, self.discriminator_a),
        }
        self.replicas = {"generators": _Cycle(self.generator, self.generator_ba),
                         "discriminators": _Pair(self.discriminator_a, self.discriminator)}  # fmt: skip
        self.pools = {
            "fake_a": ImagePool(optimization.pool_size, seed=optimization.seed + 1),
            "fake_b": ImagePool(optimization.pool_size, seed=optimization.seed),
        }

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        """G step first (both generators, D frozen), then the D step on pooled fakes (CycleGAN's order)."""
        w, forward = self.weights, self.forward_context(real_a.device)
        stats: dict[str, Tensor] = {}
        with Frozen(self.discriminator, self.discriminator_a):
            self.optimizers["generator"].zero_grad(set_to_none=True)
            with forward:
                fake_b, fake_a, cycled_a, cycled_b, same_b, same_a = self.replicas["generators"](
                    real_a, real_b, identity=bool(w.identity_l1)
                )
                loss_gan = g_lsgan_loss(self.discriminator(fake_b)) + g_lsgan_loss(self.discriminator_a(fake_a))
                loss_cycle = _l1(cycled_a, real_a) + _l1(cycled_b, real_b)
                loss_g = w.gan * loss_gan + w.cycle * loss_cycle
                if w.identity_l1:
                    loss_identity = _l1(same_b, real_b) + _l1(same_a, real_a)
                    stats["identity_l1"] = loss_identity.detach()
                    loss_g = loss_g + w.identity_l1 * loss_identity
                if w.structure:
                    loss_structure = self.structure(real_a, fake_b, query_rng) + self.structure(
                        real_b, fake_a, query_rng
                    )
                    stats["structure"] = loss_structure.detach()
                    loss_g = loss_g + w.structure * loss_structure
            self.update("generator", loss_g)
        stats.update(g_gan=loss_gan.detach(), cycle=loss_cycle.detach(), g=loss_g.detach())

        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        with forward:
            pooled_a = self.pools["fake_a"].query(fake_a.detach()).to(real_a.dtype)
            pooled_b = self.pools["fake_b"].query(fake_b.detach()).to(real_b.dtype)
            scores_a, scores_b = self.replicas["discriminators"](
                torch.cat([real_a, pooled_a]), torch.cat([real_b, pooled_b])
            )
            loss_d = d_lsgan_loss(*scores_a.chunk(2)) + d_lsgan_loss(*scores_b.chunk(2))
        self.update("discriminator", loss_d)
        stats["d"] = loss_d.detach()
        return stats

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "generator_ba": self.generator_ba,
                "discriminator": self.discriminator, "discriminator_a": self.discriminator_a}  # fmt: skip


class _Cycle(nn.Module):
    """Both generators' passes of one step in one module call (one DDP forward per backward):
    ``G_AB(a), G_BA(b)``, the cycles ``G_BA(G_AB(a)), G_AB(G_BA(b))`` and, with ``identity``,
    ``G_AB(b), G_BA(a)`` (batched with the first pass)."""

    def __init__(self, generator_ab: nn.Module, generator_ba: nn.Module) -> None:
        super().__init__()
        self.generator_ab, self.generator_ba = generator_ab, generator_ba

    def forward(self, real_a: Tensor, real_b: Tensor, identity: bool = False):
        if identity:
            fake_b, same_b = self.generator_ab(torch.cat([real_a, real_b])).chunk(2)
            fake_a, same_a = self.generator_ba(torch.cat([real_b, real_a])).chunk(2)
        else:
            fake_b, fake_a, same_b, same_a = self.generator_ab(real_a), self.generator_ba(real_b), None, None
        return fake_b, fake_a, self.generator_ba(fake_b), self.generator_ab(fake_a), same_b, same_a


class _Pair(nn.Module):
    """Two networks called in one module call (one DDP forward per backward): ``(f(x), g(y))``."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.first(x), self.second(y)
