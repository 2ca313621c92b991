"""Checkpoints: only tensors and primitives, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sesim import __version__
from sesim.config import migrate_stored, stored_config, to_yaml
from sesim.errors import CheckpointError, disk_full, is_disk_full
from sesim.outputs import partial_path, written_in_place
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
    checkpoint = {"format": FORMAT, "format_version": FORMAT_VERSION, "sesim_version": __version__, **payload}
    # What a kill -9 mid-write leaves (a run has one writer; earlier versions named it .NAME.pt.*.tmp).
    for stale in [*path.parent.glob(partial_path(Path("*.pt")).name), *path.parent.glob(".*.pt.*.tmp")]:
        stale.unlink(missing_ok=True)
    try:
        with written_in_place(path) as partial, open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before it takes the name of the previous checkpoint
    except BaseException as error:
        if is_disk_full(error):
            raise disk_full(
                path.parent, _tensor_bytes(checkpoint), f"checkpoint {path.name}",
                f"{_what_is_kept(path)}; free some space or set log.out_dir on a larger disk "
                "(log.keep_checkpoints keeps fewer)",
            ) from None  # fmt: skip
        raise
    return path


def _what_is_kept(path: Path) -> str:
    """What a failed save of ``path`` leaves, truly: the checkpoint there was before it, or none."""
    kept = [p for p in path.parent.glob("*.pt") if not p.name.startswith(".")]
    if not kept:
        return "no checkpoint had been saved before it"
    latest = path.parent / "latest.pt"
    previous = latest if latest in kept else max(kept, key=lambda p: p.stat().st_mtime)
    return f"the previous checkpoint {previous} is intact"


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
    with written_in_place(target) as partial:
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
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
        checkpoint = load_weights_only(path)
    except UnsafeOrUnreadable as error:
        raise CheckpointError(f"cannot load checkpoint {path}: {error}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SeSim checkpoint; {_WHERE}")
    written = checkpoint.get("format_version")
    if written == 1:  # one process's RNG and pool at the top level
        checkpoint["processes"] = [{"rng": checkpoint.pop("rng"), "pools": {"fake_b": checkpoint.pop("pool")}}]
    if written in (1, 2):
        checkpoint["format_version"], checkpoint["written_format"] = FORMAT_VERSION, written
    if isinstance(checkpoint.get("config"), dict):  # key names of earlier versions -> today's
        migrate_stored(checkpoint["config"])
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {checkpoint.get('format_version')}; this SeSim reads 1 to {FORMAT_VERSION}"
        )
    stored = checkpoint.get("config", {}).get("method")
    if method is not None and stored != method:
        raise CheckpointError(f"{path} was trained with method {stored!r}, not {method!r}")
    return checkpoint


def describe(path: str | Path, with_config: bool = False) -> str:
    """What ``sesim info`` prints about a checkpoint: method, step, data, networks, who wrote it
    (``with_config``: and its whole stored config as YAML)."""
    checkpoint = load_checkpoint(path)
    config = stored_config(checkpoint, str(path))
    data = config.data
    where = data.root if data.folder_a is None else f"{data.folder_a} | {data.folder_b}"
    lines = [
        f"checkpoint: {path}",
        f"method: {config.method} (preset name {config.name}); structure term {config.loss.structure}",
        f"step: {checkpoint['step']} of {config.train.max_steps or 'the preset schedule'}",
        f"data: {where} ({data.direction}, {data.crop_size} px crops)",
    ]
    for name, state in checkpoint["networks"].items():
        count = sum(t.numel() for t in state.values() if hasattr(t, "numel"))
        lines.append(f"network {name}: {count / 1e6:.2f}M parameters")
    if checkpoint.get("best"):
        best = checkpoint["best"]
        lines.append(f"best: {best['metric']} {best['value']:.4g} at step {best['step']}")
    written = checkpoint.get("written_format", checkpoint.get("format_version"))
    lines.append(f"written by: sesim {checkpoint.get('sesim_version', '?')}, checkpoint format {written}")
    return "\n".join(lines) + "\n" + (to_yaml(config) if with_config else "")
