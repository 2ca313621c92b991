"""Distribution metrics between a folder of real and a folder of translated images: FID and KID
(torchmetrics, TensorFlow-compatible Inception from a weights file) and an offline Frechet
distance on EfficientNet-Lite0 features for machines without that file.

Every feature network here takes ``uint8`` images ``(B, 3, H, W)`` and returns ``(B, D)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from sesim.backbones import build_backbone
from sesim.backbones.weights import hub_checkpoint_path, load_state_dict_file
from sesim.errors import DataError, WeightsUnavailableError
from sesim.files import INCEPTION_FILE

# torch-fidelity's port of the TensorFlow FID Inception (what torchmetrics uses).
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_HINT = (
    f"download {INCEPTION_URL} and pass --inception-weights PATH (or put it in {hub_checkpoint_path(INCEPTION_FILE)}); "
    "without it, use the offline fd_efficientnet metric"
)


def inception_weights_path(weights: str | os.PathLike | None) -> Path:
    """The Inception weights file: the given path, else the torch hub cache; a clear error if neither."""
    path = Path(weights).expanduser() if weights is not None else hub_checkpoint_path(INCEPTION_FILE)
    if not path.is_file():
        where = "--inception-weights" if weights is not None else "the torch hub cache"
        raise WeightsUnavailableError(f"FID/KID: Inception weights not found at {path} ({where}); {INCEPTION_HINT}")
    # torch-fidelity loads the file with weights_only=False: check first that it is a plain state dict.
    load_state_dict_file(path, "FID Inception")
    return path


def inception_network(weights: str | os.PathLike | None = None) -> nn.Module:
    """The TensorFlow-compatible FID Inception (2048-d pool features) with weights from a file."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = inception_weights_path(weights)
    return NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )


class EfficientNetFeatures(nn.Module):
    """Average-pooled last-stage EfficientNet-Lite0 features (320-d) of ``uint8`` images resized to
    224x224: the offline stand-in for Inception. Its distances are *not* FID values."""

    def __init__(self, weights: str = "imagenet", size: int = 224) -> None:
        super().__init__()
        self.backbone, self.size = build_backbone("efficientnet_lite0", weights=weights), size

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 127.5 - 1  # 0..255 -> [-1, 1], the backbones' input contract
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.backbone(x, ["stage7"])["stage7"].mean(dim=(2, 3)).double()


def distribution_scores(
    real: Iterable[Tensor],
    fake: Iterable[Tensor],
    feature: nn.Module,
    kid_subsets: int = 100,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Frechet distance and KID between two streams of ``uint8`` batches under one feature network.

    KID's subset size is adapted to small sets (``min(1000, n_real, n_fake)``); KID needs at
    least 2 images per side. Returns ``frechet``, ``kid_mean``, ``kid_std``, ``n_real``, ``n_fake``.
    """
    feature = feature.to(device).eval()
    cache = _FeatureCache(feature)
    real_features = [cache(batch.to(device)) for batch in real]
    fake_features = [cache(batch.to(device)) for batch in fake]
    n_real, n_fake = sum(len(f) for f in real_features), sum(len(f) for f in fake_features)
    if n_real < 2 or n_fake < 2:
        raise DataError(f"distribution metrics need at least 2 images per side, got {n_real} real and {n_fake} fake")
    subset = min(1000, n_real, n_fake)
    replay = _Replay(torch.cat(real_features), torch.cat(fake_features))
    fid = FrechetInceptionDistance(feature=replay, reset_real_features=True, normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features": they are small here
        kid = KernelInceptionDistance(feature=replay, subsets=kid_subsets, subset_size=subset, normalize=False)
    for metric in (fid, kid):
        metric.update(replay.token(True, n_real), real=True)
        metric.update(replay.token(False, n_fake), real=False)
    kid_mean, kid_std = kid.compute()
    return {
        "frechet": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset_size": subset,
        "n_real": n_real,
        "n_fake": n_fake,
    }


class _FeatureCache:
    def __init__(self, feature: nn.Module) -> None:
        self.feature = feature

    @torch.no_grad()
    def __call__(self, batch: Tensor) -> Tensor:
        return self.feature(batch).double().cpu()


class _Replay(nn.Module):
    """Hands torchmetrics features computed once (FID and KID share them): ``update`` receives a
    token tensor that selects the real or fake features."""

    def __init__(self, real: Tensor, fake: Tensor) -> None:
        super().__init__()
        self.real, self.fake = real, fake
        self.num_features = real.shape[1]

    def token(self, real: bool, count: int) -> Tensor:
        return torch.full((count, 1), 1 if real else 0, dtype=torch.uint8)

    def forward(self, token: Tensor) -> Tensor:
        if token.shape[1:] != (1,):  # torchmetrics' probe of the output width
            return torch.zeros(token.shape[0], self.num_features, dtype=torch.float64)
        return self.real if bool(token[0, 0]) else self.fake
