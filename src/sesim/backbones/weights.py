"""Finding pretrained weights: an explicit file, the torch hub cache, then a download."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch

from sesim.errors import WeightsUnavailableError
from sesim.torch_files import UnsafeOrUnreadable, load_weights_only


def hub_checkpoint_path(file_name: str) -> Path:
    """Where torch hub keeps a downloaded checkpoint (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """Load a weights file safely (``weights_only=True``: a pickle that runs code is refused)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"{what}: weights file not found: {path}")
    try:
        state = load_weights_only(path)
    except UnsafeOrUnreadable as error:
        raise WeightsUnavailableError(f"{what}: cannot read weights file {path}: {error}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{what}: {path} does not hold a state dict")
    return state


def cached_or_download(url: str, file_name: str, what: str, hint: str) -> dict[str, torch.Tensor]:
    """Weights from the torch hub cache when present, else downloaded into it.

    Raises:
        WeightsUnavailableError: with ``hint`` (how to supply the file) when neither works.
    """
    cached = hub_checkpoint_path(file_name)
    if cached.is_file():
        return load_state_dict_file(cached, what)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, weights_only=True)
    except (URLError, OSError, RuntimeError) as error:
        raise WeightsUnavailableError(
            f"{what}: no local weights and the download failed ({type(error).__name__}); {hint}"
        ) from error
