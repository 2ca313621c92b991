"""Checkpoints: only tensors and primitives, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from sesim import __version__
from sesim.config import migrate_stored
from sesim.errors import CheckpointError, disk_full, is_disk_full

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

# How files that are not checkpoints begin.
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image?)"), (b"BM", "a BMP image"), (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)  # fmt: skip


def _file_kind(path: Path) -> str | None:
    """What a file that is not a checkpoint is, from its first bytes (``None``: it may be one)."""
    with path.open("rb") as file:
        head = file.read(4096)
    if not head:
        return "an empty file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith(b"PK\x03\x04"):  # a zip: torch.save's format, or a TorchScript archive
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None  # damaged: torch.load says how
        if any(name.endswith(("/constants.pkl", "/code/")) or "/code/" in name for name in names):
            return "a TorchScript export (sesim export writes these for deployment; they hold no training state)"
        if not any(name.endswith("/data.pkl") for name in names):
            return "a zip archive"
        return None
    if head.startswith(b"\x80"):  # a pickle (torch's legacy format)
        return None
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "an ONNX model (sesim export writes these for deployment; they hold no training state)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a PyTorch file (unrecognised bytes)"
    return "a text file"


def _load_failure(error: Exception) -> str:
    """The reason ``torch.load`` gave, in the user's words."""
    text = str(error)
    if "Unsupported global" in text or "not an allowed global" in text:
        return "it holds Python objects that would run code when unpickled, which SeSim refuses to load"
    if "Unsupported operand" in text:
        return (
            "it was pickled with a protocol the safe loader cannot read (torch.save(..., pickle_protocol=N)); "
            "save it again with torch.save's default protocol"
        )
    if "WeightsUnpickler error" in text:
        return "the safe loader refused it: " + text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
    if "central directory" in text or "failed reading zip archive" in text or "unexpected EOF" in text:
        return "the file is truncated or damaged (an interrupted copy or download?)"
    if isinstance(error, EOFError) or "Ran out of input" in text:
        return "the file is truncated (it ends before the checkpoint does)"
    lines = text.strip().splitlines()
    return lines[0] if lines and len(lines[0]) > 3 else f"{type(error).__name__}: not a PyTorch checkpoint"


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
    kind = _file_kind(path)
    if kind is not None:
        raise CheckpointError(f"{path} is {kind}, not a SeSim checkpoint; {_WHERE}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore", UserWarning)
            document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot load checkpoint {path}: {_load_failure(error)}") from None
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
