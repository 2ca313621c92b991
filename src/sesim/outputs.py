"""How every command writes what the user asked for: outputs are checked before the work (a
writable place; an existing file replaced only when asked, never an input), and each file or
folder is written under a hidden temporary name beside it and renamed onto its name when
complete, so a stop or a failure never leaves a half-written output to be taken for a finished
one, nor damages the one it was to replace."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sesim.errors import DataError


def refuse_existing(paths: list[Path], option: str) -> None:
    """Refuse when any of ``paths`` exists (what ``--overwrite`` would allow); names the first one."""
    taken = [path for path in paths if path.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise DataError(
            f"{option}: {taken[0]} already exists{more}; choose another {option} or pass --overwrite to replace"
        )


def check_writable(paths: list[Path], option: str) -> None:
    """Each of ``paths`` can be written: its nearest existing folder is a writable folder (checked
    before the work, so a report or an export is not computed only to be lost)."""
    for path in paths:
        existing = next((parent for parent in Path(path).absolute().parents if parent.exists()), None)
        if existing is None:
            continue
        if not existing.is_dir():
            raise DataError(f"{option}: cannot write {path}: {existing} is a file; choose another {option}")
        if not os.access(existing, os.W_OK):
            raise DataError(f"{option}: cannot write in {existing}; choose a writable place for {option}")


def check_output_file(output: Path, source: str | Path, source_name: str, option: str, overwrite: bool) -> None:
    """One output file (an export, a picture): never ``source`` (nor a hard link to it), an
    existing file only with ``overwrite``, and a place that can be written; ``option`` names the
    flag in the message."""
    check_writable([output], option)
    if not output.exists():
        return
    if Path(source).exists() and os.path.samefile(output, source):
        raise DataError(f"{option}: {output} is {source_name}; choose another file name")
    if not overwrite:
        refuse_existing([output], option)


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it takes its name: hidden, beside it, its suffix kept (a
    writer that picks the format by the suffix writes the same format)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextmanager
def written_in_place(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write ``path``'s content at (a file or a folder); when the block
    ends without an error, rename it onto ``path``; whatever happens, leave no temporary behind."""
    partial = partial_path(path)
    _remove(partial)  # left by a process killed mid-write
    try:
        yield partial
        os.replace(partial, path)
    finally:
        _remove(partial)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_report(json_path: Path, markdown_path: Path, result: dict, table: str) -> None:
    """A command's results: JSON for programs and its Markdown table for people, each written in place."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((json_path, json.dumps(result, indent=2)), (markdown_path, table)):
        with written_in_place(path) as partial:
            partial.write_text(text)


def report_files(out: str | Path) -> list[Path]:
    """``OUT.json`` and ``OUT.md``: a ``.json`` / ``.md`` suffix of ``out`` is dropped, any other dot
    kept (``--out eval_v2.1`` writes ``eval_v2.1.json``, not ``eval_v2.json``)."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in (".json", ".md") else out
    return [base.with_name(base.name + suffix) for suffix in (".json", ".md")]


def check_reports(paths: list[Path], option: str, overwrite: bool) -> None:
    """A report replaces an existing file only with ``--overwrite`` (checked before the work)."""
    for path in paths:
        if path.is_dir():
            raise DataError(f"{option}: {path} is a folder; choose another {option}")
    check_writable(paths, option)
    if not overwrite:
        refuse_existing(paths, option)
