"""Using a trained generator: load it from a checkpoint, translate images of any size (tiled when
large), export it. Imports nothing from ``sesim.training`` or ``sesim.methods``."""

from sesim.inference.loading import LoadedGenerator, load_generator
from sesim.inference.translate import translate_paths, translate_tensor
from sesim.runtime import pick_device, resolve_precision, weight_dtype

__all__ = [
    "LoadedGenerator",
    "load_generator",
    "pick_device",
    "resolve_precision",
    "translate_paths",
    "translate_tensor",
    "weight_dtype",
]
