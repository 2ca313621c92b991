"""LPIPS diversity of multi-output translation: the mean LPIPS distance between the outputs of
one input, averaged over inputs (higher = more diverse). LPIPS comes from torchmetrics; its
backbone (torchvision AlexNet, VGG16 or SqueezeNet) needs its ImageNet weights file."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from urllib.error import URLError

import torch
from torch import Tensor

from sesim.backbones.weights import hub_checkpoint_path, load_state_dict_file
from sesim.errors import DataError, WeightsUnavailableError

# torchvision's file for each LPIPS backbone (torchmetrics loads it through torchvision).
LPIPS_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def lpips_scorer(net: str = "alex", weights: str | os.PathLike | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``score(a, b)`` = LPIPS between ``(B, 3, H, W)`` batches in ``[-1, 1]``.

    ``weights``: the torchvision backbone file (``LPIPS_FILES[net]``); by default the torch hub
    cache, else torchvision downloads it. Raises :class:`WeightsUnavailableError` when neither works
    or the file is not the expected one (torchvision checks its hash).
    """
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    if net not in LPIPS_FILES:
        raise ValueError(f"LPIPS net {net!r}: choose from {', '.join(LPIPS_FILES)}")
    file_name = LPIPS_FILES[net]
    hint = f"pass --lpips-weights PATH to torchvision's {file_name} (or put it in {hub_checkpoint_path(file_name)})"
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        try:
            if weights is not None:
                path = Path(weights).expanduser().resolve()
                if not path.is_file():
                    raise WeightsUnavailableError(f"LPIPS: weights file not found: {path}; {hint}")
                load_state_dict_file(path, "LPIPS backbone")  # refuses a pickle that would run code
                (Path(hub) / "checkpoints").mkdir()
                (Path(hub) / "checkpoints" / file_name).symlink_to(path)
                torch.hub.set_dir(hub)
            metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False)
        except (URLError, OSError) as error:
            raise WeightsUnavailableError(f"LPIPS: no {file_name} here and the download failed; {hint}") from error
        except RuntimeError as error:
            if weights is None:
                raise
            reason = str(error).strip().splitlines()[0]
            raise WeightsUnavailableError(f"LPIPS: {weights} is not torchvision's {file_name} ({reason})") from None
        finally:
            torch.hub.set_dir(previous)
    metric.eval()

    @torch.no_grad()
    def score(a: Tensor, b: Tensor) -> Tensor:
        metric.reset()
        return metric(a.clamp(-1, 1), b.clamp(-1, 1))

    return score


def group_by_input(paths: list[Path]) -> dict[str, list[Path]]:
    """Outputs named ``<input>_s<k>.<ext>`` (``sesim translate --num-styles``) grouped by input."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(paths):
        match = re.fullmatch(r"(.+)_s\d+", path.stem)
        if match:
            groups.setdefault(match.group(1), []).append(path)
    return {name: files for name, files in groups.items() if len(files) >= 2}


def lpips_diversity(groups: dict[str, list[Tensor]], score: Callable[[Tensor, Tensor], Tensor]) -> dict[str, float]:
    """Mean over inputs of the mean pairwise ``score`` among that input's outputs (``(3, H, W)`` each)."""
    if not groups:
        raise DataError("LPIPS diversity needs at least one input with 2 or more outputs (files NAME_s0, NAME_s1 ...)")
    per_input = []
    for outputs in groups.values():
        pairs = list(combinations(outputs, 2))
        a = torch.stack([x for x, _ in pairs])
        b = torch.stack([y for _, y in pairs])
        per_input.append(float(score(a, b)))
    return {"lpips_diversity": sum(per_input) / len(per_input), "inputs": len(per_input)}
