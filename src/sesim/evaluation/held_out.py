"""The metrics ``validation.metric`` may name: how a held-out split is scored while training."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from sesim.evaluation.paired import maps_protocol, psnr_ssim


class HeldOutMetric(NamedTuple):
    """``score(translations, targets, device)`` on ``(H, W, 3)`` uint8 images."""

    higher_is_better: bool
    paired: bool  # targets are the ground truth of the same file name; else a set of target images
    score: Callable[[list[np.ndarray], list[np.ndarray], torch.device], float]


@functools.cache
def _efficientnet_features():
    from sesim.evaluation.distribution import EfficientNetFeatures

    return EfficientNetFeatures()


def _fd_efficientnet(outputs: list[np.ndarray], targets: list[np.ndarray], device: torch.device) -> float:
    from sesim.evaluation.distribution import distribution_scores
    from sesim.evaluation.evaluate import uint8_batches

    scores = distribution_scores(uint8_batches(targets), uint8_batches(outputs), _efficientnet_features(), 1, device)
    return scores["frechet"]


HELD_OUT_METRICS: dict[str, HeldOutMetric] = {
    "rmse": HeldOutMetric(False, True, lambda outputs, targets, device: maps_protocol(outputs, targets).rmse),
    "psnr": HeldOutMetric(True, True, lambda outputs, targets, device: psnr_ssim(outputs, targets)["psnr"]),
    "fd_efficientnet": HeldOutMetric(False, False, _fd_efficientnet),
}
