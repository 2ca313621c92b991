"""Reading a PyTorch file safely: ``weights_only=True`` always, and when it fails, the reason in
the user's words (what the file is instead, or why the safe loader refused it), never PyTorch's
advice to load it with ``weights_only=False``, which would run any code a pickle holds."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

# How files that are not PyTorch files begin.
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image?)"), (b"BM", "a BMP image"), (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)  # fmt: skip


class UnsafeOrUnreadable(Exception):
    """``torch.load(weights_only=True)`` could not read a file; the text is the reason."""


def file_kind(path: Path) -> str | None:
    """What a file that is not a ``torch.save`` file is, from its first bytes (``None``: it may be one)."""
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


def load_failure(error: Exception) -> str:
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
        reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return "the safe loader refused it: " + reason
    if "central directory" in text or "failed reading zip archive" in text or "unexpected EOF" in text:
        return "the file is truncated or damaged (an interrupted copy or download?)"
    if isinstance(error, EOFError) or "Ran out of input" in text:
        return "the file is truncated (it ends before the data does)"
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    if not first or len(first) <= 3 or "weights_only" in text or "Weights only load failed" in first:
        return f"{type(error).__name__}: not a PyTorch file the safe loader can read"
    return first


def load_weights_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; :class:`UnsafeOrUnreadable` with the
    reason when the file is something else or the safe loader refuses it."""
    path = Path(path)
    kind = file_kind(path)
    if kind is not None:
        raise UnsafeOrUnreadable(f"it is {kind}, not a PyTorch weights file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have no common base class
        raise UnsafeOrUnreadable(load_failure(error)) from None
