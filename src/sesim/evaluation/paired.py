"""Paired metrics for translations with ground truth: the GcGAN maps protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MapsScores:
    rmse: float  # mean over images of sqrt(sum over RGB of squared 0-255 differences / pixels)
    accuracy_5: float  # share of all pixels whose largest channel difference is below 5
    accuracy_10: float  # ... below 10
    images: int


def maps_protocol(predictions: list[np.ndarray], targets: list[np.ndarray]) -> MapsScores:
    """GcGAN (Fu et al., CVPR 2019) aerial -> map scores on ``(H, W, 3)`` uint8 pairs of equal size.

    RMSE is per image, ``sqrt(sum_{pixels, RGB} d^2 / pixels)``, then averaged; accuracies pool
    all pixels of all images.
    """
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"maps_protocol: need equal, non-zero counts, got {len(predictions)} and {len(targets)}")
    rmses, below_5, below_10, pixels = [], 0, 0, 0
    for prediction, target in zip(predictions, targets, strict=True):
        if prediction.shape != target.shape:
            raise ValueError(f"maps_protocol: shapes differ: {prediction.shape} vs {target.shape}")
        difference = prediction.astype(np.float64) - target.astype(np.float64)
        count = difference.shape[0] * difference.shape[1]
        rmses.append(float(np.sqrt((difference**2).sum() / count)))
        largest = np.abs(difference).max(axis=-1)
        below_5 += int((largest < 5).sum())
        below_10 += int((largest < 10).sum())
        pixels += count
    return MapsScores(float(np.mean(rmses)), below_5 / pixels, below_10 / pixels, len(predictions))


def psnr_ssim(predictions: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM (Gaussian window 11, sigma 1.5) over ``(H, W, 3)`` uint8 pairs,
    computed per image on the 0-1 scale with torchmetrics."""
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"psnr_ssim: need equal, non-zero counts, got {len(predictions)} and {len(targets)}")
    psnrs, ssims = [], []
    for prediction, target in zip(predictions, targets, strict=True):
        if prediction.shape != target.shape:
            raise ValueError(f"psnr_ssim: shapes differ: {prediction.shape} vs {target.shape}")
        p = torch.from_numpy(prediction.copy()).permute(2, 0, 1)[None].float() / 255
        t = torch.from_numpy(target.copy()).permute(2, 0, 1)[None].float() / 255
        psnrs.append(float(peak_signal_noise_ratio(p, t, data_range=1.0)))
        ssims.append(float(structural_similarity_index_measure(p, t, data_range=1.0)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}
