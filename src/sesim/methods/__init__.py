"""One paper per file; each owns its training step."""

from sesim.methods.sesim import NonFiniteLoss, Optimization, SeSimTranslation, build_generator

METHODS = {"sesim": SeSimTranslation}

__all__ = ["METHODS", "NonFiniteLoss", "Optimization", "SeSimTranslation", "build_generator"]
