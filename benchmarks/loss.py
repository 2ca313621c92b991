"""Speed of the spatially-correlative loss: forward + backward over three VGG16-shaped layers.

Prints one JSON object. The baseline is the authors' algorithm as they wrote it (local windows
built by slicing in a Python loop over queries, full sort for the threshold), measured in the
same run on the same inputs; ``--compare-revision REV`` adds the structure loss as it was at a git
revision. Usage: ``python benchmarks/loss.py [--device cuda] [--repeats 10] [--compare-revision REV]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_medians, machine, median_ms
from sesim.backbones import build_backbone
from sesim.losses import contrastive_spatial_loss, sample_query_ids, spatial_correlative_loss

LAYERS = [(256, 64, 64), (512, 32, 32), (512, 32, 32)]


def loop_baseline(source, target, ids, window):
    """The authors' structure: per-query window slicing in Python, full sort, tanh maps, cos mode."""

    def maps(feat):
        b, c, h, w = feat.shape
        feat = (feat - feat.mean(dim=(2, 3), keepdim=True)) / math.sqrt(c)
        flat = feat.flatten(2)
        query = flat[:, :, ids].transpose(1, 2)
        if window is None or not (window < h and window < w):
            return torch.tanh(query @ flat / 10)
        rows, cols = ids // w, ids % w
        top = (rows - window // 2).clamp(0, h - window).tolist()
        left = (cols - window // 2).clamp(0, w - window).tolist()
        keys = torch.stack([feat[:, :, t : t + window, s : s + window] for t, s in zip(top, left, strict=True)], 1)
        keys = keys.reshape(b * len(top), c, window * window)
        return torch.tanh(query.reshape(b * len(top), 1, c).bmm(keys) / 10).view(b, len(top), -1)

    a, t = maps(source), maps(target)
    k = t.shape[-1]
    threshold = t.sort(dim=-1, descending=True).values[..., k // 4 : k // 4 + 1]
    a = torch.where(t < threshold, 0 * a, a)
    t = torch.where(t < threshold, 0 * t, t)
    return F.smooth_l1_loss(F.cosine_similarity(a, t, dim=-1), torch.ones(a.shape[:2], device=a.device))


def matmul_floor(features):
    """Only the dense products any exact implementation needs: per layer, the source and target
    maps ``(n, C) @ (C, HW)`` and the target's two backward products. Everything else is overhead."""
    operands = []
    for source, _ in features:
        b, c, h, w = source.shape
        queries, grad = torch.randn(b, 256, c, device=source.device), torch.randn(b, 256, h * w, device=source.device)
        operands.append((queries, source.flatten(2), grad))

    def step():
        for queries, keys, grad in operands:
            torch.bmm(queries, keys)
            torch.bmm(queries, keys)
            torch.bmm(grad, keys.transpose(1, 2))
            torch.bmm(queries.transpose(1, 2), grad)

    return step


def loss_at_revision(revision: str):
    """``spatial_correlative_loss`` as it was at a git revision, to time it beside today's."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:src/sesim/losses/spatial.py"], cwd=root, capture_output=True, text=True
    )
    if source.returncode != 0:
        raise ValueError(f"--compare-revision: git cannot show {revision}: {source.stderr.strip()}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spatial_at_revision.py"
        path.write_text(source.stdout)
        spec = importlib.util.spec_from_file_location("spatial_at_revision", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.spatial_correlative_loss


def run_layers(loss, features, window, generator):
    total = 0
    for source, target in features:
        ids = sample_query_ids(source.shape[2], source.shape[3], 256, generator=generator, device=source.device)
        total = total + loss(source, target, ids, window)
    return total


def fwd_bwd(loss, features, window, generator):
    def step():
        for _, target in features:
            target.grad = None
        run_layers(loss, features, window, generator).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--compare-revision", metavar="REV", help="also time the structure loss as it was at this git revision"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(0)
    try:
        previous = loss_at_revision(args.compare_revision) if args.compare_revision else None
    except ValueError as error:
        parser.error(str(error))
    results = {
        "machine": machine(device),
        "unit": "ms, median forward+backward, backbone excluded; interleaved rounds",
        "repeats": args.repeats,
        "rows": [],
    }

    def contrastive(source, target, ids, window):
        return contrastive_spatial_loss(source, target, target.flip(2, 3), ids, window)

    for batch in args.batches:
        features = [
            (torch.randn(batch, c, h, w, device=device), torch.randn(batch, c, h, w, device=device, requires_grad=True))
            for c, h, w in LAYERS
        ]
        # Every timing of one batch size is interleaved (round-robin), so the floor, SeSim and the
        # baseline see the same machine even when its speed drifts during the run.
        fns = {"floor": matmul_floor(features)}
        for window in (None, 32):
            fns[f"sesim/{window}"] = fwd_bwd(spatial_correlative_loss, features, window, gen)
            fns[f"contrastive/{window}"] = fwd_bwd(contrastive, features, window, gen)
            if not args.skip_baseline:
                fns[f"loop/{window}"] = fwd_bwd(loop_baseline, features, window, gen)
            if previous is not None:
                fns[f"revision/{window}"] = fwd_bwd(previous, features, window, gen)
        medians = interleaved_medians(fns, device, args.repeats)
        results["rows"].append({"batch": batch, "matmul_floor_ms": medians["floor"]})
        for window in (None, 32):
            row = {"batch": batch, "window": window}
            row["sesim_ms"] = medians[f"sesim/{window}"]
            row["contrastive_ms"] = medians[f"contrastive/{window}"]
            if not args.skip_baseline:
                row["authors_loop_ms"] = medians[f"loop/{window}"]
                row["speedup"] = round(row["authors_loop_ms"] / row["sesim_ms"], 2)
            if previous is not None:
                row[f"at_{args.compare_revision}_ms"] = medians[f"revision/{window}"]
            results["rows"].append(row)

        backbone = build_backbone("vgg16", weights="random").to(device)
        images = torch.rand(batch, 3, 256, 256, device=device, requires_grad=True)

        def backbone_step(backbone=backbone, images=images):
            images.grad = None
            out = backbone(images, ("relu3_1", "relu4_1", "relu4_3"))
            sum(t.sum() for t in out.values()).backward()

        results["rows"].append(
            {"batch": batch, "vgg16_backbone_fwd_bwd_ms": median_ms(backbone_step, device, max(3, args.repeats // 3))}
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
