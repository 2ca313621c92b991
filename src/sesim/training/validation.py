"""Validation during training: translate a held-out split and score it with one metric."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from sesim.config import ValidationConfig
from sesim.data.images import DataError, list_images, load_rgb, to_image, to_tensor
from sesim.metrics.paired import maps_protocol, psnr_ssim
from sesim.translate import translate_tensor

HIGHER_IS_BETTER = {"rmse": False, "psnr": True, "fd_efficientnet": False}


class Validator:
    """Loads the held-out images once; ``validator(generator)`` returns the metric's value.

    Paired metrics (``rmse``: the GcGAN maps protocol, ``psnr``) match ``folder_b`` to
    ``folder_a`` by file name; ``fd_efficientnet`` compares the translations with ``folder_b``
    as a set.
    """

    def __init__(self, config: ValidationConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.metric = config.metric
        sources = list_images(config.folder_a, "validation.folder_a")[: config.max_images]
        targets = {p.stem: p for p in list_images(config.folder_b, "validation.folder_b")}
        if self.metric != "fd_efficientnet":
            missing = [p.name for p in sources if p.stem not in targets]
            if missing:
                raise DataError(f"validation.folder_b {config.folder_b}: no ground truth named like {missing[0]}")
            chosen = [targets[p.stem] for p in sources]
        else:
            chosen = sorted(targets.values())[: config.max_images]
        size = (config.size, config.size)
        self.sources = torch.stack([to_tensor(load_rgb(p).resize(size, Image.BICUBIC)) for p in sources])
        self.targets = [np.array(load_rgb(p).resize(size, Image.BICUBIC)) for p in chosen]
        self._features = None

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if HIGHER_IS_BETTER[self.metric] else value < best

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
        if self.metric == "rmse":
            return maps_protocol(outputs, self.targets).rmse
        if self.metric == "psnr":
            return psnr_ssim(outputs, self.targets)["psnr"]
        from sesim.evaluate import uint8_batches
        from sesim.metrics.distribution import EfficientNetFeatures, distribution_scores

        self._features = self._features or EfficientNetFeatures()
        scores = distribution_scores(
            uint8_batches(self.targets), uint8_batches(outputs), self._features, 1, self.device
        )
        return scores["frechet"]
