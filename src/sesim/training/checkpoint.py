"""Checkpoints: only tensors and primitives, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sesim import __version__

FORMAT = "sesim-checkpoint"
FORMAT_VERSION = 2  # 2: per-process RNG and image pools under "processes"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the reason."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus format/version fields to ``path`` via a temporary file and a rename,
    so a crash mid-write never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "sesim_version": __version__, **payload}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(document, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, method: str | None = None) -> dict[str, Any]:
    """Load safely and check the format (and the method, when given)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "latest.pt"
        if not candidate.is_file():
            raise CheckpointError(f"{path}: no checkpoints/latest.pt inside; pass a run directory or a .pt file")
        path = candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, code-running pickle ...
        text = str(error).strip().splitlines()
        reason = "it would run code when unpickled" if "weights_only" in str(error) else (text[0] if text else "")
        raise CheckpointError(f"cannot load checkpoint {path}: {reason or type(error).__name__}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SeSim checkpoint")
    if document.get("format_version") == 1:  # one process's RNG and pool at the top level
        document["processes"] = [{"rng": document.pop("rng"), "pools": {"fake_b": document.pop("pool")}}]
        document["format_version"] = FORMAT_VERSION
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {document.get('format_version')}; this SeSim reads 1 and {FORMAT_VERSION}"
        )
    stored = document.get("config", {}).get("method")
    if method is not None and stored != method:
        raise CheckpointError(f"{path} was trained with method {stored!r}, not {method!r}")
    return document
