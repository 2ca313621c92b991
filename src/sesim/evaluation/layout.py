"""How well a translation keeps a known layout: the demo's scores (``sesim demo``), on images
whose ground truth is known (:mod:`sesim.data.synthetic`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sesim.data.images import to_image
from sesim.data.synthetic import CLASS_NAMES


def layout_iou(image: np.ndarray, labels: np.ndarray, blur: int = 5) -> float:
    """How well an image keeps a layout: mean IoU of a nearest-centroid segmentation.

    The image is box-blurred (to look past texture), each class's mean colour is taken over its
    true region, and every pixel is assigned to the nearest class mean. A translation that keeps
    the layout separates the classes (IoU near 1); a flat or scrambled image cannot (near 1/K).

    Args:
        image: ``(H, W, 3)`` uint8.
        labels: ``(H, W)`` integer labels.
    """
    tensor = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    pad = blur // 2
    blurred = F.avg_pool2d(F.pad(tensor, (pad, pad, pad, pad), mode="replicate"), blur, stride=1)[0]
    pixels = blurred.flatten(1).T  # (HW, 3)
    truth = torch.from_numpy(labels.reshape(-1))
    present = truth.unique()
    centroids = torch.stack([pixels[truth == c].mean(0) for c in present])
    predicted = present[torch.cdist(pixels, centroids).argmin(1)]
    ious = [((predicted == c) & (truth == c)).sum() / ((predicted == c) | (truth == c)).sum() for c in present]
    return float(torch.stack(ious).mean())


def class_colours(image: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> tuple[dict[int, float], list[int]]:
    """Does a translation draw every class in the colour of its ground-truth rendering?

    For each class present, its mean colour in ``image`` and in the ground-truth rendering
    ``truth`` over the class's true region; the error is their RGB distance (0-255 scale). A
    class is *lost* when its mean colour in ``image`` lies nearer to another class's
    ground-truth colour than to its own (e.g. red roofs drawn as grass).

    Args:
        image, truth: ``(H, W, 3)`` uint8; ``labels``: ``(H, W)`` integer labels.

    Returns:
        ``({class: error}, [lost classes])``.

    Example:
        >>> from sesim.data.synthetic import render_flat
        >>> labels = np.array([[0, 1], [0, 1]])
        >>> truth = render_flat(labels)
        >>> class_colours(truth, truth, labels)
        ({0: 0.0, 1: 0.0}, [])
        >>> class_colours(truth[:, ::-1], truth, labels)[1]  # the two classes swapped
        [0, 1]
    """
    present = [int(c) for c in np.unique(labels)]
    drawn = {c: image[labels == c].reshape(-1, 3).astype(np.float64).mean(0) for c in present}
    wanted = {c: truth[labels == c].reshape(-1, 3).astype(np.float64).mean(0) for c in present}
    errors = {c: float(np.linalg.norm(drawn[c] - wanted[c])) for c in present}
    lost = [c for c in present if min(present, key=lambda k: np.linalg.norm(drawn[c] - wanted[k])) != c]
    return errors, lost


def colour_scores(outputs: torch.Tensor, truth: torch.Tensor, labels: list[np.ndarray]) -> dict:
    """Per class: the mean RGB distance of its drawn colour to the ground-truth rendering's, and on
    how many images it was drawn in another class's colour (:func:`class_colours`)."""
    errors: dict[str, list[float]] = {}
    lost = dict.fromkeys(CLASS_NAMES, 0)
    for output, target, label in zip(outputs, truth, labels, strict=True):
        per_class, lost_here = class_colours(np.asarray(to_image(output)), np.asarray(to_image(target)), label)
        for c, value in per_class.items():
            errors.setdefault(CLASS_NAMES[c], []).append(value)
        for c in lost_here:
            lost[CLASS_NAMES[c]] += 1
    return {
        "colour_error": {name: round(float(np.mean(values)), 1) for name, values in errors.items()},
        "lost": lost,  # images on which the class took another class's colour
    }
