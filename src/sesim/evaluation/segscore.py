"""``sesim segscore``: the Cityscapes label -> photo score of translated photos, with the score of
the real photos beside it as the upper bound.

Protocol (CUT / F-LSeSim): photos resized to 256x128 (bicubic), ground-truth ``labelIds``
resized with nearest neighbour and mapped to the 19 train ids, a DRN-D-22 segmenter trained on
Cityscapes, mean IoU / pixel accuracy / class accuracy from one confusion matrix over all images.
Community DRN checkpoints differ, so numbers are comparable only under the same weights file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from sesim.backbones.weights import load_state_dict_file
from sesim.data.images import list_images, load_rgb, to_tensor
from sesim.errors import DataError, WeightsUnavailableError
from sesim.evaluation.drn import DRNSegmenter
from sesim.evaluation.segmentation import confusion, match_key, scores, segment, train_ids


def load_segmenter(path: str | Path) -> DRNSegmenter:
    """DRN-D-22 with the user's Cityscapes weights (a state dict; ``module.`` prefixes accepted)."""
    state = load_state_dict_file(path, "DRN-D-22 segmenter")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    network = DRNSegmenter()
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise WeightsUnavailableError(f"{path} is not a DRN-D-22 Cityscapes state dict ({first})") from None
    return network.eval()


def _matched(folder: str | Path, labels: dict[str, Path], what: str) -> list[tuple[Path, Path]]:
    photos = {match_key(p.stem): p for p in list_images(folder, what)}
    missing = sorted(set(photos) - set(labels))
    if missing:
        raise DataError(f"{what} {folder}: no labelIds file for {missing[0]} (files are matched by name)")
    return [(photos[key], labels[key]) for key in sorted(photos)]


def score_folder(
    segmenter: nn.Module,
    pairs: list[tuple[Path, Path]],
    size: tuple[int, int] = (256, 128),
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> dict[str, float]:
    """Scores of ``(photo, labelIds)`` pairs at ``size`` (width, height)."""
    segmenter = segmenter.to(device).eval()
    total = np.zeros((19, 19), dtype=np.int64)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = torch.stack([to_tensor(load_rgb(photo).resize(size, Image.BICUBIC)) for photo, _ in chunk])
        for prediction, (_, label) in zip(segment(segmenter, images.to(device)), chunk, strict=True):
            with Image.open(label) as picture:
                if picture.mode not in ("L", "P", "I", "I;16"):
                    raise DataError(f"{label}: expected a single-channel labelIds image, got mode {picture.mode}")
                ids = np.asarray(picture.resize(size, Image.NEAREST))
            total += confusion(prediction, train_ids(ids))
    return {**scores(total), "images": len(pairs)}


def cityscapes_score(
    photos: str | Path,
    labels: str | Path,
    segmenter: nn.Module,
    real: str | Path | None = None,
    size: tuple[int, int] = (256, 128),
    device: torch.device | str = "cpu",
) -> dict:
    """Score translated ``photos`` (and, as the upper bound, ``real`` photos) against ``labels``."""
    label_files = {match_key(p.stem): p for p in list_images(labels, "--labels")}
    result = {
        "size": list(size),
        "translated": score_folder(segmenter, _matched(photos, label_files, "--photos"), size, device),
    }
    if real is not None:
        result["real"] = score_folder(segmenter, _matched(real, label_files, "--real"), size, device)
    return result


def markdown(result: dict) -> str:
    lines = ["| photos | mean IoU | pixel accuracy | class accuracy | images |", "|---|---|---|---|---|"]
    for name in ("translated", "real"):
        if name in result:
            r = result[name]
            label = "real photos (upper bound)" if name == "real" else "translated"
            figures = f"{r['mean_iou']:.3f} | {r['pixel_accuracy']:.3f} | {r['class_accuracy']:.3f}"
            lines.append(f"| {label} | {figures} | {r['images']} |")
    return "\n".join(lines) + "\n"
