"""One paper per file; each owns its training step. ``METHODS`` names them for configs and the CLI."""

from sesim.methods.base import NonFiniteLoss, Optimization, TranslationMethod
from sesim.methods.cyclegan import CycleGAN
from sesim.methods.multimodal import Multimodal
from sesim.methods.one_sided import OneSidedTranslation
from sesim.methods.sinsesim import SinSeSim

METHODS: dict[str, type[TranslationMethod]] = {
    "one_sided": OneSidedTranslation,  # FSeSim, LSeSim, CUT, FastCUT, GAN alone ... (loss.structure)
    "cyclegan": CycleGAN,
    "sinsesim": SinSeSim,  # single image pair
    "multimodal": Multimodal,  # MUNIT-style, style codes
}

__all__ = [
    "METHODS",
    "CycleGAN",
    "Multimodal",
    "NonFiniteLoss",
    "OneSidedTranslation",
    "Optimization",
    "SinSeSim",
    "TranslationMethod",
]
