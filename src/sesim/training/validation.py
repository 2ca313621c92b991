"""Validation during training: translate a held-out split and score it with one metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from sesim.config import ValidationConfig
from sesim.data.images import list_images, load_rgb, to_image, to_tensor
from sesim.errors import DataError
from sesim.evaluation.held_out import HELD_OUT_METRICS
from sesim.inference.translate import translate_tensor


def held_out_files(config: ValidationConfig) -> tuple[list[Path], list[Path]]:
    """The held-out sources and what their translations are scored against: for a paired metric,
    the ground truth named like each source (a clear error for the first one missing); else the
    first images of ``folder_b``."""
    sources = list_images(config.folder_a, "validation.folder_a")[: config.max_images]
    targets = {p.stem: p for p in list_images(config.folder_b, "validation.folder_b")}
    if not HELD_OUT_METRICS[config.metric].paired:
        return sources, sorted(targets.values())[: config.max_images]
    missing = [p.name for p in sources if p.stem not in targets]
    if missing:
        raise DataError(
            f"validation.folder_b {config.folder_b}: no ground truth named like {missing[0]} "
            f"({len(missing)} of {len(sources)} sources unmatched; validation.metric={config.metric} pairs by "
            "file name)"
        )
    return sources, [targets[p.stem] for p in sources]


class Validator:
    """Loads the held-out images once; ``validator(generator)`` returns the metric's value.

    Paired metrics (``rmse``: the GcGAN maps protocol, ``psnr``) match ``folder_b`` to
    ``folder_a`` by file name; ``fd_efficientnet`` compares the translations with ``folder_b``
    as a set (:data:`sesim.evaluation.held_out.HELD_OUT_METRICS`).
    """

    def __init__(self, config: ValidationConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.metric = HELD_OUT_METRICS[config.metric]
        sources, chosen = held_out_files(config)
        size = (config.size, config.size)
        self.sources = torch.stack([to_tensor(load_rgb(p).resize(size, Image.BICUBIC)) for p in sources])
        self.targets = [np.array(load_rgb(p).resize(size, Image.BICUBIC)) for p in chosen]

    @torch.no_grad()
    def __call__(self, generator: nn.Module) -> float:
        was_training = generator.training
        generator.eval()
        try:
            outputs = [
                np.array(to_image(image))
                for batch in self.sources.split(8)
                for image in translate_tensor(generator, batch.to(self.device))
            ]
        finally:
            generator.train(was_training)
        return self.metric.score(outputs, self.targets, self.device)
