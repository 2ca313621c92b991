"""``sesim eval``: score a folder of translations against real images (JSON + a Markdown table).

- ``fid`` / ``kid``: TensorFlow-compatible Inception through torchmetrics; its weights come from a
  file, never from a random network.
- ``fd_efficientnet``: the Frechet distance on EfficientNet-Lite0 features (offline; not FID).
- ``paired`` (with ``paired_with``): the GcGAN maps protocol, PSNR and SSIM against the ground
  truth of the same file name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sesim.data.images import list_images, load_rgb, same_size_batches, to_tensor
from sesim.errors import ConfigError, DataError
from sesim.evaluation.distribution import (
    EfficientNetFeatures,
    distribution_scores,
    inception_network,
)
from sesim.evaluation.diversity import group_by_input, lpips_diversity, lpips_scorer
from sesim.evaluation.paired import maps_protocol, psnr_ssim

METRICS = ("fid", "fd_efficientnet", "paired", "lpips_diversity")


def load_folder(folder: str | Path, what: str) -> dict[str, np.ndarray]:
    """``{file stem: (H, W, 3) uint8}`` for every image of a folder."""
    return {path.stem: np.array(load_rgb(path)) for path in list_images(folder, what)}


def uint8_batches(images: Sequence[np.ndarray], batch_size: int = 32) -> Iterator[torch.Tensor]:
    """``(B, 3, H, W)`` uint8 batches; consecutive images of one size share a batch."""
    for group in same_size_batches(images, lambda image: image.shape, batch_size):
        yield torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2).contiguous()


# Below this many images per set a Frechet distance or KID is mostly sampling noise (and below the
# feature width the covariance is singular): the result says so. FID is usually quoted on thousands.
SMALL_SET = 100


def check_pairs(fake: dict[str, np.ndarray], truth: dict[str, np.ndarray], truth_dir: str | Path) -> None:
    """Every translation has its ground truth of the same name and size (checked before any scoring)."""
    missing = sorted(set(fake) - set(truth))
    if missing or len(fake) != len(truth):
        raise DataError(
            f"--paired-with {truth_dir}: {len(truth)} images for {len(fake)} translations"
            + (f"; no ground truth for {', '.join(missing[:3])}" if missing else "")
            + " (pairs are matched by file name)"
        )
    for name in sorted(fake):
        if fake[name].shape != truth[name].shape:
            raise DataError(
                f"{name}: translation is {fake[name].shape[1]}x{fake[name].shape[0]} but the ground truth is "
                f"{truth[name].shape[1]}x{truth[name].shape[0]}; translate at the ground truth's size"
            )


def paired_scores(fake: dict[str, np.ndarray], truth: dict[str, np.ndarray], truth_dir: str | Path) -> dict:
    check_pairs(fake, truth, truth_dir)
    names = sorted(fake)
    predictions, targets = [fake[n] for n in names], [truth[n] for n in names]
    maps = maps_protocol(predictions, targets)
    return {"rmse": maps.rmse, "accuracy_5": maps.accuracy_5, "accuracy_10": maps.accuracy_10,
            **psnr_ssim(predictions, targets), "pairs": len(names)}  # fmt: skip


def evaluate(
    real: str | Path,
    fake: str | Path,
    paired_with: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    feature_networks: dict[str, torch.nn.Module] | None = None,
    lpips_weights: str | os.PathLike | None = None,
    lpips_score=None,
) -> dict:
    """Score the translations in ``fake`` against the real images in ``real``.

    Args:
        metrics: names from ``METRICS``; default: ``fd_efficientnet``, ``paired`` when
            ``paired_with`` is given, ``fid`` (with KID) when Inception weights are given and
            ``lpips_diversity`` when LPIPS weights are; an input given for a metric left out is an error.
        feature_networks: replace a metric's feature network (``{"fid": net}``; tests pass a tiny one).
        lpips_weights: torchvision backbone file for ``lpips_diversity`` (outputs named ``NAME_sK``);
            ``lpips_score`` replaces the LPIPS scorer (tests).
    """
    inputs = {"paired": ("--paired-with", paired_with), "fid": ("--inception-weights", inception_weights),
              "lpips_diversity": ("--lpips-weights", lpips_weights)}  # fmt: skip
    if metrics is None:
        metrics = ["fd_efficientnet"] + [metric for metric, (_, given) in inputs.items() if given]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    for metric, (flag, given) in inputs.items():
        if given and metric not in metrics:  # a file or folder given for nothing: say so, do not drop it
            raise ConfigError(
                f"{flag} is used by the {metric} metric only; add {metric} to --metrics or leave {flag} out"
            )
    if "paired" in metrics and paired_with is None:
        raise ConfigError("--metrics paired needs --paired-with DIR (the ground truth, matched by file name)")
    real_images, fake_images = load_folder(real, "--real"), load_folder(fake, "--fake")
    truth = None
    if "paired" in metrics:  # names and sizes first: no minutes of feature extraction before a mismatch
        truth = load_folder(paired_with, "--paired-with")
        check_pairs(fake_images, truth, paired_with)
    networks = dict(feature_networks or {})
    result: dict = {"real": str(real), "fake": str(fake), "n_real": len(real_images), "n_fake": len(fake_images)}
    smallest = min(len(real_images), len(fake_images))
    if smallest < SMALL_SET and {"fid", "fd_efficientnet"} & set(metrics):
        result["warnings"] = [
            f"{smallest} images in the smaller set: Frechet distances and KID from fewer than {SMALL_SET} images "
            "are dominated by sampling noise (FID is quoted on thousands); compare only sets of the same size"
        ]
    for name in ("fid", "fd_efficientnet"):
        if name not in metrics:
            continue
        network = networks.get(name) or (
            inception_network(inception_weights) if name == "fid" else EfficientNetFeatures()
        )
        scores = distribution_scores(
            uint8_batches(list(real_images.values())), uint8_batches(list(fake_images.values())), network, device=device
        )
        if name == "fid":
            result["fid"] = max(0.0, scores["frechet"])
            result["kid"] = {
                "mean": scores["kid_mean"],
                "std": scores["kid_std"],
                "subset_size": scores["kid_subset_size"],
            }
        else:
            result["fd_efficientnet"] = max(0.0, scores["frechet"])  # >= 0; rounding can dip below
    if "paired" in metrics:
        result["paired"] = paired_scores(fake_images, truth, paired_with)
    if "lpips_diversity" in metrics:
        groups = group_by_input(list_images(fake, "--fake"))
        tensors = {name: [to_tensor(load_rgb(p)) for p in files] for name, files in groups.items()}
        result["lpips_diversity"] = lpips_diversity(tensors, lpips_score or lpips_scorer("alex", lpips_weights))
    return result


def markdown(result: dict) -> str:
    """A two-column Markdown table of one evaluation."""
    rows = [("images (real / translated)", f"{result['n_real']} / {result['n_fake']}")]
    if "fid" in result:
        rows.append(("FID (Inception, TF-compatible)", f"{result['fid']:.2f}"))
        kid = result["kid"]
        rows.append((f"KID x 1000 (subset {kid['subset_size']})", f"{kid['mean'] * 1e3:.2f} +- {kid['std'] * 1e3:.2f}"))
    if "fd_efficientnet" in result:
        rows.append(
            ("Frechet distance, EfficientNet-Lite0 features (offline; not FID)", f"{result['fd_efficientnet']:.3f}")
        )
    if "paired" in result:
        p = result["paired"]
        rows += [
            ("RMSE (GcGAN maps protocol, 0-255)", f"{p['rmse']:.2f}"),
            ("pixel accuracy, max channel diff < 5", f"{100 * p['accuracy_5']:.1f}%"),
            ("pixel accuracy, max channel diff < 10", f"{100 * p['accuracy_10']:.1f}%"),
            ("PSNR (dB)", f"{p['psnr']:.2f}"),
            ("SSIM", f"{p['ssim']:.4f}"),
        ]
    if "lpips_diversity" in result:
        d = result["lpips_diversity"]
        rows.append((f"LPIPS diversity (AlexNet; {d['inputs']} inputs)", f"{d['lpips_diversity']:.4f}"))
    lines = ["| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    lines += [f"\nwarning: {text}" for text in result.get("warnings", [])]
    return "\n".join(lines) + "\n"
