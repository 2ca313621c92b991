"""What is trained: generators, discriminators, similarity heads, patch projectors.

``GENERATORS`` and ``DISCRIMINATORS`` map a config's ``kind`` to the function that builds it
from its config section; config validation, error messages and inference use these dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from sesim.losses.heads import SimilarityHeads, head_width
from sesim.networks.discriminators import PatchDiscriminator
from sesim.networks.generators import ResnetGenerator
from sesim.networks.munit import MultimodalGenerator
from sesim.networks.projector import PatchProjector
from sesim.networks.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

if TYPE_CHECKING:
    from sesim.config import DiscriminatorConfig, GeneratorConfig

GENERATORS: dict[str, Callable[[GeneratorConfig], nn.Module]] = {
    "resnet": lambda c: ResnetGenerator(ngf=c.ngf, blocks=c.blocks, antialias=c.antialias),  # the paper's
    "stylegan2": lambda c: StyleGAN2Generator(ngf=c.ngf, blocks=c.blocks),  # single-image translation
    "munit": lambda c: MultimodalGenerator(ngf=c.ngf, blocks=c.blocks, style_dim=c.style_dim),  # multi-modal
}

DISCRIMINATORS: dict[str, Callable[[DiscriminatorConfig], nn.Module]] = {
    "patchgan": lambda c: PatchDiscriminator(ndf=c.ndf, layers=c.layers, antialias=c.antialias),  # 70x70, LSGAN
    "stylegan2": lambda c: StyleGAN2Discriminator(ndf=c.ndf, layers=c.layers),  # single image
}


def build_generator(config: GeneratorConfig) -> nn.Module:
    """The generator a ``model.generator`` section describes (weights freshly initialised)."""
    return GENERATORS[config.kind](config)


def build_discriminator(config: DiscriminatorConfig) -> nn.Module:
    """The discriminator a ``model.discriminator`` section describes."""
    return DISCRIMINATORS[config.kind](config)


__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "MultimodalGenerator",
    "PatchDiscriminator",
    "PatchProjector",
    "ResnetGenerator",
    "SimilarityHeads",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "build_discriminator",
    "build_generator",
    "head_width",
]
