"""``sesim analyze``: the paper's study of why the spatially-correlative loss works.

For paired folders (same file name = same content in two domains), every content loss scores
aligned pairs ``(A_i, B_i)`` and unaligned pairs ``(A_i, B_j)``, ``j != i``. A loss that keeps
content should give aligned pairs the smaller distance whatever the change of appearance; the
AUC says how often it does (1 = always, 0.5 = chance).

Losses: pixel L1, perceptual (backbone feature L1), PatchNCE-style patch contrast (InfoNCE over
the same positions, no learned projector), FSeSim (global / local, cos / l1) and LSeSim (the
heads of a trained checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from sesim.backbones import BACKBONES, DEFAULT_TAPS, build_backbone
from sesim.data.images import list_images, load_rgb, to_tensor
from sesim.errors import ConfigError, DataError
from sesim.losses import patch_nce_loss, sample_query_ids, spatial_correlative_loss
from sesim.runtime import available_ram

Features = dict[str, Tensor]
# A content distance between a source image and a candidate translation, given both images and
# their backbone features.
Distance = Callable[[Tensor, Tensor, Features, Features], float]


def paired_files(folder_a: str | Path, folder_b: str | Path) -> list[tuple[Path, Path]]:
    """``(A, B)`` files that share a file stem; at least 2 pairs."""
    a = {p.stem: p for p in list_images(folder_a, "--a")}
    b = {p.stem: p for p in list_images(folder_b, "--b")}
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise DataError(f"--a {folder_a} and --b {folder_b} share {len(common)} file names; need 2 or more pairs")
    return [(a[name], b[name]) for name in common]


def patch_nce(source: Tensor, target: Tensor, ids: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE of each source position against the target at all sampled positions (positive:
    the same position), on L2-normalised features; lower = more aligned."""
    s = F.normalize(source.flatten(2)[:, :, ids], dim=1).transpose(1, 2)  # (B, n, C)
    t = F.normalize(target.flatten(2)[:, :, ids], dim=1).transpose(1, 2)
    return patch_nce_loss(s, t, temperature)


def build_distances(taps: tuple[str, ...], shapes: dict[str, tuple[int, int]], num_queries: int, window: int,
                    heads=None, seed: int = 0) -> dict[str, Distance]:  # fmt: skip
    """The losses under study, each with fixed query positions per tap (the same for every pair)."""
    generator = torch.Generator().manual_seed(seed)
    ids = {tap: sample_query_ids(*shapes[tap], num_queries, generator=generator) for tap in taps}

    def per_tap(loss: Callable[[Tensor, Tensor, Tensor], Tensor], project=None) -> Distance:
        def distance(image_a, image_b, features_a, features_b) -> float:
            values = []
            for tap in taps:
                fa, fb = features_a[tap], features_b[tap]
                if project is not None:
                    fa, fb = project(tap, fa), project(tap, fb)
                values.append(float(loss(fa, fb, ids[tap])))
            return float(np.mean(values))

        return distance

    def sesim(window_size, mode):
        return lambda a, b, i: spatial_correlative_loss(a, b, i, window=window_size, mode=mode)

    distances: dict[str, Distance] = {
        "pixel L1": lambda a, b, fa, fb: float((a - b).abs().mean()),
        "perceptual (feature L1)": per_tap(lambda a, b, i: (a - b).abs().mean()),
        "PatchNCE-style (no projector)": per_tap(patch_nce),
        "FSeSim global cos": per_tap(sesim(None, "cos")),
        "FSeSim global l1": per_tap(sesim(None, "l1")),
        f"FSeSim local {window} cos": per_tap(sesim(window, "cos")),
        f"FSeSim local {window} l1": per_tap(sesim(window, "l1")),
    }
    if heads is not None:
        distances["LSeSim global cos (trained heads)"] = per_tap(sesim(None, "cos"), project=heads)
    return distances


PROBE = 64  # side of the image whose features tell the tap sizes and feature bytes per pixel
ACTIVATION_FACTOR = 40  # the backbone's transient activations, in input-tensor sizes (generous)


def check_size(network: torch.nn.Module, taps: tuple[str, ...], size: int, window: int, pairs: int) -> None:
    """Refuse a ``--size`` whose tap maps are too small for the losses (at least 2x2, and the
    window's 4 keys) or whose features for every image would not fit in the memory there is,
    before any image is read."""
    if size < 16:
        raise ConfigError(f"--size {size}: images are resized to SIZE x SIZE for the backbone; give 16 or more")
    probe = network(torch.zeros(1, 3, PROBE, PROBE), taps)
    for tap, features in probe.items():
        stride = PROBE // min(features.shape[-2:])
        side = size // stride
        if side < 2:
            raise ConfigError(
                f"--size {size}: tap {tap} is {side}x{side} at that size (it divides by {stride}); "
                f"the losses need at least 2x2: give --size {2 * stride} or more"
            )
    scale = (size / PROBE) ** 2
    per_image = 4 * scale * (sum(f.numel() for f in probe.values()) + 3 * PROBE * PROBE)
    needed = 2 * pairs * per_image + ACTIVATION_FACTOR * 4 * 3 * size * size
    free = available_ram()
    if free is not None and needed > free:
        raise ConfigError(
            f"--size {size} with {pairs} pairs needs ~{needed / 2**30:.1f} GiB for their features, "
            f"{free / 2**30:.1f} GiB are available; give a smaller --size or --max-pairs"
        )


def auc(aligned: list[float], unaligned: list[float]) -> float:
    """Probability that an aligned pair scores a smaller distance than an unaligned one."""
    scores = -torch.tensor(aligned + unaligned, dtype=torch.float64)
    labels = torch.tensor([1] * len(aligned) + [0] * len(unaligned))
    return float(binary_auroc(scores, labels))


@torch.no_grad()
def analyze(
    folder_a: str | Path,
    folder_b: str | Path,
    backbone: str = "efficientnet_lite0",
    taps: tuple[str, ...] | None = None,
    size: int = 256,
    max_pairs: int = 100,
    unaligned_per_image: int = 5,
    num_queries: int = 256,
    window: int = 9,
    heads_checkpoint: str | Path | None = None,
    weights: str = "imagenet",
    seed: int = 0,
) -> dict:
    """Score aligned and unaligned pairs under every loss; returns the JSON-ready summary."""
    if window < 2:
        raise ConfigError(f"--window {window}: a local window needs at least 2x2 positions; give --window 2 or more")
    if max_pairs < 2 or unaligned_per_image < 1:
        raise ConfigError(
            f"--max-pairs {max_pairs} --unaligned {unaligned_per_image}: an AUC needs unaligned pairs to compare "
            "with; give --max-pairs 2 or more and --unaligned 1 or more"
        )
    pairs = paired_files(folder_a, folder_b)[:max_pairs]
    if len(pairs) < 2:
        raise ConfigError(
            f"--a {folder_a}, --b {folder_b}: {len(pairs)} pair of files with one name; an AUC needs at least 2 "
            "(the unaligned pairs are made across them)"
        )
    network = build_backbone(backbone, weights=weights)
    heads = None
    if heads_checkpoint is not None:
        heads, backbone, head_taps = _heads_from_checkpoint(heads_checkpoint, backbone)
        if taps and tuple(taps) != head_taps:
            raise ConfigError(
                f"--taps {','.join(taps)}: the heads of {heads_checkpoint} sit on taps {','.join(head_taps)}; "
                "leave --taps out (the heads' taps are used) or give those"
            )
        taps = head_taps
    taps = tuple(taps or DEFAULT_TAPS[backbone])
    check_size(network, taps, size, window, len(pairs))

    def load(path: Path) -> Tensor:
        return to_tensor(load_rgb(path).resize((size, size), Image.BICUBIC))[None]

    images_a = [load(a) for a, _ in pairs]
    images_b = [load(b) for _, b in pairs]
    features_a = [network(x, taps) for x in images_a]
    features_b = [network(x, taps) for x in images_b]
    shapes = {tap: tuple(f.shape[-2:]) for tap, f in features_a[0].items()}
    distances = build_distances(taps, shapes, num_queries, window, heads, seed)

    count = len(pairs)
    rng = np.random.default_rng(seed)
    partners = [rng.choice([j for j in range(count) if j != i], min(unaligned_per_image, count - 1), replace=False)
                for i in range(count)]  # fmt: skip
    results = {}
    for name, distance in distances.items():
        aligned = [distance(images_a[i], images_b[i], features_a[i], features_b[i]) for i in range(count)]
        unaligned = [distance(images_a[i], images_b[j], features_a[i], features_b[j])
                     for i in range(count) for j in partners[i]]  # fmt: skip
        mean_aligned, mean_unaligned = float(np.mean(aligned)), float(np.mean(unaligned))
        results[name] = {
            "aligned_mean": mean_aligned,
            "unaligned_mean": mean_unaligned,
            "ratio_aligned_to_unaligned": mean_aligned / mean_unaligned if mean_unaligned else float("nan"),
            "auc": auc(aligned, unaligned),
            "aligned": aligned,
            "unaligned": unaligned,
        }
    return {
        "a": str(folder_a), "b": str(folder_b), "pairs": count, "unaligned_pairs": sum(map(len, partners)),
        "backbone": backbone, "weights": str(weights), "taps": list(taps), "size": size, "window": window,
        "num_queries": num_queries, "seed": seed, "losses": results,
    }  # fmt: skip


def _heads_from_checkpoint(path: str | Path, backbone: str):
    from sesim.checkpoint import load_checkpoint
    from sesim.config import stored_config
    from sesim.errors import CheckpointError
    from sesim.losses.heads import SimilarityHeads

    checkpoint = load_checkpoint(path)
    loss = stored_config(checkpoint, str(path)).loss
    if "heads" not in checkpoint["networks"]:
        raise CheckpointError(f"{path}: no learned heads inside (train an LSeSim preset for them)")
    if loss.backbone != backbone:
        raise CheckpointError(f"{path}: its heads sit on {loss.backbone}, not --backbone {backbone}")
    heads = SimilarityHeads({tap: BACKBONES[backbone].tap_channels[tap] for tap in loss.taps})
    heads.load_state_dict(checkpoint["networks"]["heads"])
    return heads.eval(), backbone, tuple(loss.taps)


def markdown(summary: dict) -> str:
    lines = [
        f"Aligned vs unaligned pairs: {summary['pairs']} aligned, {summary['unaligned_pairs']} unaligned; "
        f"{summary['backbone']} ({summary['weights']}) taps {', '.join(summary['taps'])}, {summary['size']} px.",
        "",
        "| loss | mean aligned | mean unaligned | aligned / unaligned | AUC |",
        "|---|---|---|---|---|",
    ]
    for name, r in sorted(summary["losses"].items(), key=lambda item: -item[1]["auc"]):
        lines.append(
            f"| {name} | {r['aligned_mean']:.4f} | {r['unaligned_mean']:.4f} | "
            f"{r['ratio_aligned_to_unaligned']:.3f} | {r['auc']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str | Path) -> Path:
    """AUC per loss, and each loss's distances divided by its unaligned mean (aligned vs unaligned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(summary["losses"], key=lambda n: summary["losses"][n]["auc"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * len(names) + 1.5), sharey=True)
    aucs = [summary["losses"][n]["auc"] for n in names]
    left.barh(names, aucs, color="tab:blue")
    left.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    left.set_xlim(0, 1)
    left.set_xlabel("AUC: aligned pair closer than unaligned")
    for position, name in enumerate(names):
        r = summary["losses"][name]
        scale = r["unaligned_mean"] or 1.0
        right.scatter(np.array(r["unaligned"]) / scale, np.full(len(r["unaligned"]), position - 0.12),
                      s=6, color="tab:red", alpha=0.4, label="unaligned" if position == 0 else None)  # fmt: skip
        right.scatter(np.array(r["aligned"]) / scale, np.full(len(r["aligned"]), position + 0.12),
                      s=6, color="tab:green", alpha=0.6, label="aligned" if position == 0 else None)  # fmt: skip
    right.set_xlabel("distance / mean unaligned distance")
    right.legend(loc="lower right")
    figure.suptitle(f"{summary['pairs']} pairs: {Path(summary['a']).name} vs {Path(summary['b']).name}")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
