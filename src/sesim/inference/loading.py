"""A trained generator from a checkpoint (where and how it runs: :mod:`sesim.runtime`).

Nothing here knows how the generator was trained: the checkpoint's own ``model.generator``
section rebuilds it through :data:`sesim.networks.GENERATORS`, so no method, loss or training
module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from sesim.checkpoint import load_checkpoint
from sesim.config import stored_config
from sesim.errors import CheckpointError
from sesim.networks import build_generator


class LoadedGenerator(NamedTuple):
    """A generator rebuilt from a checkpoint, and the checkpoint it came from (its stored
    ``config`` dict, ``step``, ``networks`` ...)."""

    generator: nn.Module
    checkpoint: dict


# ``--direction`` -> the checkpoint's network that translates that way (A and B as the run trained them).
DIRECTIONS = {"AtoB": "generator", "BtoA": "generator_ba"}


def load_generator(
    checkpoint_path: str | Path,
    device: torch.device | str = "cpu",
    checkpoint: dict | None = None,
    direction: str = "AtoB",
) -> LoadedGenerator:
    """Rebuild the trained generator from a checkpoint's own config (no architecture flags), in
    eval mode on ``device``. ``checkpoint``: the checkpoint already read from ``checkpoint_path``.
    ``direction``: ``BtoA`` takes the B->A generator of a run that trains one (CycleGAN)."""
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint is None else checkpoint
    name = DIRECTIONS[direction]
    if name not in checkpoint["networks"]:
        method = checkpoint["config"].get("method")
        raise CheckpointError(
            f"--direction {direction}: {checkpoint_path} (method {method}) learned A->B only; the cyclegan "
            "method trains a B->A generator too, or train a run on the swapped domains (data.direction=BtoA)"
        )
    config = stored_config(checkpoint, str(checkpoint_path)).model.generator
    generator = build_generator(config)
    try:
        generator.load_state_dict(checkpoint["networks"][name])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{checkpoint_path}: {name} weights do not fit its config ({error})") from None
    return LoadedGenerator(generator.to(device).eval(), checkpoint)
