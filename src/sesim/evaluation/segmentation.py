"""The Cityscapes label -> photo score: segment the translated photos with a fixed segmenter and
compare with the ground-truth labels (mean IoU, pixel accuracy, class accuracy over 19 classes).

Ground truth comes from Cityscapes ``*_labelIds.png`` files (label ids 0..33), mapped to the 19
train ids with the official table; every other id is ignored. Colour-coded label pictures are
not read: matching colours breaks on compression and antialiasing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

# Official Cityscapes label id -> train id (255: ignored).
LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
IGNORE = 255


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids -> train ids 0..18, everything else 255."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label, train in LABEL_TO_TRAIN_ID.items():
        table[label] = train
    return table[label_ids.astype(np.int64).clip(0, 255)]


def confusion(prediction: np.ndarray, truth: np.ndarray, classes: int = 19) -> np.ndarray:
    """``(classes, classes)`` counts, rows = truth, columns = prediction; ignored pixels skipped."""
    keep = truth != IGNORE
    index = truth[keep].astype(np.int64) * classes + prediction[keep].astype(np.int64)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)


def scores(matrix: np.ndarray) -> dict[str, float]:
    """Mean IoU (the field's "mAP" column), pixel accuracy and mean class accuracy, averaged
    over the classes present in the ground truth."""
    true_positive = np.diag(matrix).astype(np.float64)
    in_truth, predicted = matrix.sum(1).astype(np.float64), matrix.sum(0).astype(np.float64)
    present = in_truth > 0
    iou = true_positive[present] / (in_truth + predicted - true_positive)[present]
    return {
        "mean_iou": float(iou.mean()),
        "pixel_accuracy": float(true_positive.sum() / max(1.0, in_truth.sum())),
        "class_accuracy": float((true_positive[present] / in_truth[present]).mean()),
        "classes_present": int(present.sum()),
    }


@torch.no_grad()
def segment(segmenter: nn.Module, images: Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, H, W)`` predicted train ids."""
    return segmenter(images).argmax(1).to(torch.uint8).cpu().numpy()


def match_key(stem: str) -> str:
    """``frankfurt_000000_000294_leftImg8bit`` and ``..._gtFine_labelIds`` share ``frankfurt_000000_000294``."""
    for suffix in ("_gtFine_labelIds", "_leftImg8bit", "_labelIds"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem
