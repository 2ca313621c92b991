"""One paper per file; each owns its training step."""

from sesim.methods.sesim import Optimization, SeSimTranslation, build_generator

METHODS = {"sesim": SeSimTranslation}

__all__ = ["METHODS", "Optimization", "SeSimTranslation", "build_generator"]
