"""What every translation method shares with the training loop: optimizers, DDP replicas, the
non-finite guard, autocast for forward passes, image pools and the modules to checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sesim.config import DiscriminatorConfig, GeneratorConfig, LossConfig, RunConfig, WeightsConfig
from sesim.errors import ConfigError
from sesim.losses.adversarial import d_lsgan_loss_stacked
from sesim.methods.pool import ImagePool
from sesim.methods.structure import StructureTerm, build_structure_term
from sesim.networks import build_discriminator, build_generator
from sesim.networks.layers import checkpoint_activations


class NonFiniteLoss(ArithmeticError):
    """A loss was NaN or infinite; raised before that loss's optimizer changed any weight."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(f"non-finite {name} loss ({value})")
        self.name, self.value = name, value


@dataclass(frozen=True)
class Optimization:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    pool_size: int = 50
    seed: int = 0
    fused: bool = True  # one fused Adam kernel per optimizer step (CPU and CUDA)

    def adam(self, *modules: nn.Module) -> torch.optim.Adam:
        parameters = [p for module in modules for p in module.parameters()]
        return torch.optim.Adam(parameters, lr=self.lr, betas=self.betas, fused=self.fused or None)


class TranslationMethod(nn.Module):
    """Base of the methods. A subclass's :meth:`build` makes its networks and fills
    ``optimizers``, ``replicas`` (the modules whose calls carry gradients, swapped for DDP
    wrappers by :meth:`distribute`) and ``pools``; its ``training_step(real_a, real_b,
    query_rng)`` returns a dict of detached scalars.

    Args:
        generator, discriminator: network sections of the config.
        loss: the structure term (``loss.structure``) and its settings.
        weights: loss weights.
        optimization: learning rate, Adam betas, image-pool size, seed of the pools.
        check_finite: never step on a NaN/Inf loss. With fused Adam (the default) the check runs on
            the device: the optimizer gets the loss's non-finite flag as ``found_inf`` and skips
            its update, with no host sync; the flags of each step are kept for the training loop
            to read when it logs (:meth:`skipped_updates`). Unfused optimizers raise
            :class:`NonFiniteLoss` before stepping (one host sync per optimizer step).
        autocast: ``torch.bfloat16`` runs the forward passes under autocast (weights, optimizer
            states and the similarity maps stay float32); ``None`` is full precision.
    """

    generator: nn.Module  # A -> B: samples, translate, export
    structure: StructureTerm  # the structure term of the generator's objective (loss.structure)

    def __init__(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        weights: WeightsConfig,
        optimization: Optimization | None = None,
        check_finite: bool = True,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.check_finite, self.autocast, self.weights = check_finite, autocast, weights
        self.all_ranks_true: Callable[[Tensor], bool] = bool  # DDP: every process must agree
        self.any_rank: Callable[[Tensor], Tensor] = lambda flag: flag  # DDP: the MAX over processes
        self.skipped: dict[str, Tensor] = {}  # per optimizer, whether this step's update was skipped
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.replicas: dict[str, nn.Module] = {}
        self.pools: dict[str, ImagePool] = {}
        self.build(generator, discriminator, loss, optimization or Optimization())

    @classmethod
    def check(cls, config: RunConfig) -> None:
        """Refuse, with a ``ConfigError`` naming the key, settings the schema allows but this method
        cannot train with. Called once, where a run is resolved (``training.runs.resolve_run``),
        so a dry run says it before any network is built."""

    @staticmethod
    def check_fixed_structure(method: str, loss: LossConfig) -> None:
        """For methods whose structure term has no trainable part of its own: no PatchNCE, no heads."""
        if loss.structure == "patchnce" or (loss.structure == "sesim" and loss.learned):
            raise ConfigError(f"{method}: loss.structure must be sesim (fixed features), perceptual or none")

    def build(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        raise NotImplementedError

    def build_networks(
        self,
        generator: GeneratorConfig,
        discriminator: DiscriminatorConfig,
        loss: LossConfig,
        optimization: Optimization,
    ) -> None:
        """The one-generator methods' networks and optimizers: ``generator``, ``discriminator``,
        the structure term on the generator (which PatchNCE taps), the generator's optimizer
        (with the structure term's jointly trained parts) and the discriminator's."""
        self.generator = build_generator(generator)
        self.discriminator = build_discriminator(discriminator)
        self.structure = build_structure_term(loss, self.generator)
        self.optimizers = {
            "generator": optimization.adam(self.generator, *self.structure.joint_modules().values()),
            "discriminator": optimization.adam(self.discriminator),
        }

    def distribute(
        self,
        wrap: Callable[[nn.Module], nn.Module],
        all_ranks_true: Callable[[Tensor], bool],
        any_rank: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Route the gradient-carrying calls through ``wrap(module)`` (DistributedDataParallel);
        ``all_ranks_true`` (host check) and ``any_rank`` (device flag, all-reduced without a sync)
        make the non-finite check a decision all processes share."""
        self.replicas = {name: wrap(module) for name, module in self.replicas.items()}
        self.all_ranks_true = all_ranks_true
        if any_rank is not None:
            self.any_rank = any_rank

    def place(
        self, device: torch.device, dtype: torch.dtype = torch.float32, layout: torch.memory_format | None = None
    ) -> TranslationMethod:
        """Move to ``device`` with ``dtype`` weights (and ``layout``); under bf16 autocast the fixed
        feature extractors keep bf16 weights, so autocast does not cast them again at every call
        (the trained networks keep float32 master weights)."""
        self.to(device, dtype)
        if layout is not None:
            self.to(memory_format=layout)
        if self.autocast is not None:
            for module in self.structure.frozen_modules():
                for parameter in module.parameters():
                    parameter.data = parameter.data.to(self.autocast)
        return self

    def checkpoint_activations(self) -> TranslationMethod:
        """Recompute the generators' and discriminators' activations in the backward pass
        (``train.activation_checkpointing``); a network without a layer sequence is an error."""
        for name, module in self.trained_modules().items():
            if name.startswith(("generator", "discriminator")) and not checkpoint_activations(module):
                raise ConfigError(
                    f"train.activation_checkpointing: {name} ({type(module).__name__}) has no layer sequence to "
                    "checkpoint (the resnet generator and the patch discriminator have); set it to false"
                )
        return self

    def forward_context(self, device: torch.device):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    def update(self, name: str, loss: Tensor) -> None:
        """Backward and step one optimizer (its gradients were zeroed by the caller).

        With the guard on, a non-finite loss changes no weight: fused Adam reads the device flag
        ``found_inf`` (1 skips the update and its step count); other optimizers are checked on the
        host and raise :class:`NonFiniteLoss` before stepping."""
        optimizer = self.optimizers[name]
        if self.check_finite:
            if optimizer.defaults.get("fused"):
                # x * 0 is 0 for a finite x and NaN for NaN or +-inf: 0 or 1, no host sync, two kernels.
                optimizer.found_inf = self.any_rank((loss.detach() * 0).nan_to_num(nan=1.0).float())
                self.skipped[name] = optimizer.found_inf
            elif not self.all_ranks_true(torch.isfinite(loss)):
                raise NonFiniteLoss(name, loss.detach().item())
        loss.backward()
        optimizer.step()

    def lsgan_discriminator_step(self, real: Tensor, fake: Tensor, pool: str = "fake_b") -> Tensor:
        """The LSGAN discriminator update: real images and the pooled translations scored in one
        call, targets 1 and 0; returns the detached loss."""
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        with self.forward_context(real.device):
            pooled = self.pools[pool].query(fake.detach()).to(real.dtype)
            loss = d_lsgan_loss_stacked(self.replicas["discriminator"](torch.cat([real, pooled])))
        self.update("discriminator", loss)
        return loss.detach()

    def skipped_updates(self) -> tuple[list[str], Tensor | None]:
        """The optimizers the last step updated under the device guard, and ``(k,)`` flags, 1 where
        the loss was not finite and the update was skipped (agreed by all processes); ``None``
        without device checks. Reading the flags is the caller's host sync."""
        if not self.skipped:
            return [], None
        return list(self.skipped), torch.stack(list(self.skipped.values()))

    def trained_modules(self) -> dict[str, nn.Module]:
        """Every network with learned weights, by checkpoint name."""
        raise NotImplementedError

    def compile_targets(self) -> list[nn.Module]:
        """Modules ``train.compile`` compiles: every trained network, and the fixed feature
        extractors of the structure term."""
        return [*self.trained_modules().values(), *self.structure.frozen_modules()]

    def training_step(self, real_a: Tensor, real_b: Tensor, query_rng: torch.Generator | None = None) -> dict:
        raise NotImplementedError


class Frozen:
    """``with Frozen(d, heads):`` no parameter of these modules takes a gradient inside."""

    def __init__(self, *modules: nn.Module | None) -> None:
        self.modules = [m for m in modules if m is not None]

    def __enter__(self) -> Frozen:
        for module in self.modules:
            module.requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            module.requires_grad_(True)
