"""Checkpoints: only tensors and primitives, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from sesim import __version__
from sesim.config import migrate_stored
from sesim.errors import CheckpointError, disk_full, is_disk_full
from sesim.torch_files import UnsafeOrUnreadable, file_kind, load_weights_only

FORMAT = "sesim-checkpoint"
# 2: per-process RNG and image pools under "processes"; 3: the structure term's key names of
# today's config, and FastCUT's flip as CUT defines it (D sees G(flip(A)); earlier checkpoints
# trained with flip(G(flip(A))) seen by D: they load, and a resume says it continues with CUT's).
FORMAT_VERSION = 3


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus format/version fields to ``path`` via a temporary file and a rename,
    so a crash mid-write never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "sesim_version": __version__, **payload}
    for stale in path.parent.glob(".*.pt.*.tmp"):  # left by a kill -9 mid-write (a run has one writer)
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)  # like every other file written (mkstemp makes it 0600)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(document, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full(
                path.parent, _tensor_bytes(document), f"checkpoint {path.name}",
                "the previous checkpoint is intact; free some space or set log.out_dir on a larger disk "
                "(log.keep_checkpoints keeps fewer)",
            ) from None  # fmt: skip
        raise
    return path


def _tensor_bytes(tree: Any) -> int:
    """The bytes of the tensors in a nested payload (what a checkpoint mostly weighs)."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_tensor_bytes(value) for value in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_tensor_bytes(value) for value in tree)
    return 0


_WHERE = "pass a training checkpoint (runs/NNN-name/checkpoints/latest.pt) or its run folder"


def link_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` the same checkpoint as ``source`` without a second copy on disk (a hard
    link; a copy where links are not possible), replaced atomically like a save."""
    source, target = Path(source), Path(target)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)
    return target


def prune_checkpoints(folder: str | Path, keep: int | None) -> list[Path]:
    """Delete all but the newest ``keep`` ``step_*.pt`` files (``None``: keep all); returns the
    deleted ones. ``latest.pt`` and ``best.pt`` are never touched (a link keeps its data)."""
    if keep is None:
        return []
    steps = sorted(Path(folder).glob("step_*.pt"))
    removed = steps[: max(0, len(steps) - keep)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint argument names: a ``.pt`` file, or a run folder's ``checkpoints/latest.pt``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "latest.pt"
        if not candidate.is_file():
            raise CheckpointError(f"{path}: no checkpoints/latest.pt inside; pass a run directory or a .pt file")
        path = candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, method: str | None = None) -> dict[str, Any]:
    """Load safely and check the format (and the method, when given)."""
    path = checkpoint_file(path)
    kind = file_kind(path)
    if kind is not None:
        raise CheckpointError(f"{path} is {kind}, not a SeSim checkpoint; {_WHERE}")
    try:
        document = load_weights_only(path)
    except UnsafeOrUnreadable as error:
        raise CheckpointError(f"cannot load checkpoint {path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SeSim checkpoint; {_WHERE}")
    written = document.get("format_version")
    if written == 1:  # one process's RNG and pool at the top level
        document["processes"] = [{"rng": document.pop("rng"), "pools": {"fake_b": document.pop("pool")}}]
    if written in (1, 2):
        document["format_version"], document["written_format"] = FORMAT_VERSION, written
    if isinstance(document.get("config"), dict):  # key names of earlier versions -> today's
        migrate_stored(document["config"])
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {document.get('format_version')}; this SeSim reads 1 to {FORMAT_VERSION}"
        )
    stored = document.get("config", {}).get("method")
    if method is not None and stored != method:
        raise CheckpointError(f"{path} was trained with method {stored!r}, not {method!r}")
    return document
