"""What is trained: generators, discriminators, similarity heads, patch projectors.

``GENERATORS`` and ``DISCRIMINATORS`` map a config's ``kind`` to the function that builds it
from its config section; config validation, error messages and inference use these dicts. A
builder imports its network's module when it is called, so loading one generator loads no other
network's module (the classes are importable from here all the same).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from sesim.config import DiscriminatorConfig, GeneratorConfig

# Where each network class lives: ``from sesim.networks import ResnetGenerator`` imports its module then.
_HOMES = {
    "ResnetGenerator": "sesim.networks.generators",
    "MultimodalGenerator": "sesim.networks.munit",
    "StyleGAN2Generator": "sesim.networks.stylegan2",
    "StyleGAN2Discriminator": "sesim.networks.stylegan2",
    "PatchDiscriminator": "sesim.networks.discriminators",
    "PatchProjector": "sesim.networks.projector",
    "SimilarityHeads": "sesim.losses.heads",  # the heads are part of the loss; named here for older imports
    "head_width": "sesim.losses.heads",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sesim.networks' has no attribute {name!r}")


def _network(name: str) -> Any:
    return __getattr__(name)


GENERATORS: dict[str, Callable[[GeneratorConfig], nn.Module]] = {
    "resnet": lambda c: _network("ResnetGenerator")(ngf=c.ngf, blocks=c.blocks, antialias=c.antialias),  # the paper's
    "stylegan2": lambda c: _network("StyleGAN2Generator")(ngf=c.ngf, blocks=c.blocks),  # single-image translation
    "munit": lambda c: _network("MultimodalGenerator")(ngf=c.ngf, blocks=c.blocks, style_dim=c.style_dim),
}

DISCRIMINATORS: dict[str, Callable[[DiscriminatorConfig], nn.Module]] = {
    "patchgan": lambda c: _network("PatchDiscriminator")(ndf=c.ndf, layers=c.layers, antialias=c.antialias),  # LSGAN
    "stylegan2": lambda c: _network("StyleGAN2Discriminator")(ndf=c.ndf, layers=c.layers),  # single image
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
