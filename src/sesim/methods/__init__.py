"""One paper per file; each owns its training step. ``METHODS`` names them for configs and the CLI."""

from sesim.methods.base import NonFiniteLoss, Optimization, TranslationMethod
from sesim.methods.cyclegan import CycleGAN
from sesim.methods.sesim import SeSimTranslation, build_generator

METHODS: dict[str, type[TranslationMethod]] = {"sesim": SeSimTranslation, "cyclegan": CycleGAN}

__all__ = [
    "METHODS",
    "CycleGAN",
    "NonFiniteLoss",
    "Optimization",
    "SeSimTranslation",
    "TranslationMethod",
    "build_generator",
]
