"""One paper per file; each owns its training step. ``METHODS`` names them for configs and the CLI."""

from sesim.methods.base import NonFiniteLoss, Optimization, TranslationMethod
from sesim.methods.cyclegan import CycleGAN
from sesim.methods.multimodal import Multimodal
from sesim.methods.sesim import SeSimTranslation, build_generator
from sesim.methods.sinsesim import SinSeSim

METHODS: dict[str, type[TranslationMethod]] = {
    "sesim": SeSimTranslation,
    "cyclegan": CycleGAN,
    "sinsesim": SinSeSim,
    "multimodal": Multimodal,
}

__all__ = [
    "METHODS",
    "CycleGAN",
    "NonFiniteLoss",
    "Optimization",
    "SeSimTranslation",
    "SinSeSim",
    "TranslationMethod",
    "build_generator",
]
