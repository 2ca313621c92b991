"""The structure term of a translator, chosen by ``loss.structure`` and weighted by
``weights.structure``: the part of the generator's objective that keeps the input's content. The
spatially-correlative loss (fixed or learned), CUT's PatchNCE, a perceptual loss, or none;
ablations are config changes.

A term is called as ``term(real, fake, query_rng, flipped)`` in the generator step and returns a
scalar; ``flipped`` says that ``fake`` is the translation of the mirrored ``real`` (FastCUT's flip
equivariance): PatchNCE mirrors the translation's encoder features back, as CUT does, the other
terms mirror the translation back. Modules it trains together with the generator (PatchNCE's
projector) come from ``joint_modules``; LSeSim's heads train in their own step
(``SeSimTerm.loss.contrastive``); fixed feature extractors come from ``frozen_modules``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from sesim.backbones import build_backbone, check_taps
from sesim.config import LossConfig
from sesim.losses import SpatialCorrelativeLoss, sample_query_ids
from sesim.losses.patch_nce import patch_nce_loss
from sesim.networks.projector import PatchProjector

build_structure_loss = SpatialCorrelativeLoss.from_config  # the name earlier code imports


class StructureTerm(nn.Module):
    """Base of the terms: no heads, nothing trained with the generator, no fixed extractor."""

    heads: nn.Module | None = None

    def joint_modules(self) -> dict[str, nn.Module]:
        """Modules the generator's optimizer step also updates (CUT's projector)."""
        return {}

    def frozen_modules(self) -> list[nn.Module]:
        """Fixed feature extractors the term runs (compiled with ``train.compile``, never trained)."""
        return []


class SeSimTerm(StructureTerm):
    """FSeSim / LSeSim: the spatially-correlative loss on frozen backbone features (or heads)."""

    def __init__(self, config: LossConfig, generator: nn.Module | None = None) -> None:
        super().__init__()
        self.loss = SpatialCorrelativeLoss.from_config(config)

    @property
    def heads(self) -> nn.Module | None:
        return self.loss.heads

    def frozen_modules(self) -> list[nn.Module]:
        return [self.loss.backbone]

    def forward(self, real: Tensor, fake: Tensor, query_rng: torch.Generator | None, flipped: bool = False) -> Tensor:
        return self.loss(real, fake.flip(3) if flipped else fake, query_rng)


class PatchNCETerm(StructureTerm):
    """CUT's PatchNCE over the generator's own encoder taps, with an MLP projector trained jointly
    with the generator. Keys (the input's patches) carry no gradient, as in CUT."""

    def __init__(self, config: LossConfig, generator: nn.Module) -> None:
        super().__init__()
        nce = config.patchnce
        self.taps, self.num_patches, self.temperature = tuple(nce.taps), nce.num_patches, nce.temperature
        self.projector = PatchProjector(generator.tap_channels(self.taps), nce.projector_dim)
        # References, not submodules: the generator is trained and saved by the method, and the
        # projector may be called through its DDP wrapper (``use_replica``).
        self.encoder = [generator]
        self.replica = [self.projector]

    def joint_modules(self) -> dict[str, nn.Module]:
        return {"projector": self.projector}

    def use_replica(self, module: nn.Module) -> None:
        self.replica = [module]

    def _patches(self, features: dict[str, Tensor], ids: dict[str, Tensor]) -> dict[str, Tensor]:
        return {tap: f.flatten(2)[:, :, ids[tap]].transpose(1, 2) for tap, f in features.items()}

    def forward(self, real: Tensor, fake: Tensor, query_rng: torch.Generator | None, flipped: bool = False) -> Tensor:
        (generator,) = self.encoder
        with torch.no_grad():
            keys = generator.encode(real, self.taps)
        queries = generator.encode(fake, self.taps)
        if flipped:  # CUT: the features of G(flip(A)) mirrored back onto A's positions
            queries = {tap: q.flip(3) for tap, q in queries.items()}
        ids = {tap: sample_query_ids(*f.shape[-2:], self.num_patches, query_rng, f.device) for tap, f in keys.items()}
        (project,) = self.replica
        projected_keys = project(self._patches(keys, ids))
        projected_queries = project(self._patches(queries, ids))
        losses = [patch_nce_loss(projected_queries[t], projected_keys[t].detach(), self.temperature) for t in self.taps]
        return torch.stack(losses).mean()


class PerceptualTerm(StructureTerm):
    """Mean L1 distance of frozen backbone features at the loss taps (input's features detached)."""

    def __init__(self, config: LossConfig, generator: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = build_backbone(config.backbone, weights=config.backbone_weights)
        self.taps = check_taps(config.taps, self.backbone.taps, self.backbone.name)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def forward(self, real: Tensor, fake: Tensor, query_rng: torch.Generator | None, flipped: bool = False) -> Tensor:
        with torch.no_grad():
            source = self.backbone(real, self.taps)
        target = self.backbone(fake.flip(3) if flipped else fake, self.taps)
        return torch.stack([(source[t] - target[t]).abs().mean() for t in self.taps]).mean()


class NoTerm(StructureTerm):
    """No structure term: the GAN alone (the paper's and GcGAN's "GAN alone" baseline)."""

    def __init__(self, config: LossConfig | None = None, generator: nn.Module | None = None) -> None:
        super().__init__()

    def forward(self, real: Tensor, fake: Tensor, query_rng: torch.Generator | None, flipped: bool = False) -> Tensor:
        return fake.new_zeros((), dtype=torch.float32)


# ``loss.structure`` -> the term, built from the loss section and the generator it serves.
STRUCTURE_TERMS: dict[str, Callable[[LossConfig, nn.Module], StructureTerm]] = {
    "sesim": SeSimTerm,  # the paper's spatially-correlative loss (FSeSim, or LSeSim with loss.learned)
    "patchnce": PatchNCETerm,  # CUT / FastCUT
    "perceptual": PerceptualTerm,  # feature L1 at the same taps (ablation)
    "none": NoTerm,  # the GAN alone (ablation)
}


def build_structure_term(config: LossConfig, generator: nn.Module) -> StructureTerm:
    return STRUCTURE_TERMS[config.structure](config, generator)
