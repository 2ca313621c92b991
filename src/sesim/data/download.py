"""Fetching the standard unpaired datasets (CycleGAN / CUT collections) with checks."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from tqdm import tqdm

from sesim.errors import DataError

CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
# name -> archive URL; all hold trainA/ trainB/ testA/ testB/ after extraction.
DATASETS: dict[str, str] = {
    name: f"{CYCLEGAN_URL}/{name}.zip"
    for name in (
        "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "cezanne2photo",
        "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
        "grumpifycat",
    )
}  # fmt: skip


def _fetch(url: str, destination: Path, progress: bool) -> None:
    """Stream ``url`` to ``destination``; raise ``DataError`` when fewer bytes arrive than announced."""
    with urlopen(url, timeout=60) as response:
        expected = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with (
            destination.open("wb") as file,
            tqdm(total=expected, unit="B", unit_scale=True, desc=Path(url).name, disable=not progress) as bar,
        ):
            while chunk := response.read(1 << 20):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise DataError(f"download of {url} truncated: {received} of {expected} bytes")


def download(
    name: str,
    root: str | Path = "datasets",
    retries: int = 3,
    progress: bool = True,
    datasets: dict[str, str] | None = None,
) -> Path:
    """Download and extract a dataset into ``root/name``; returns that folder.

    A truncated transfer or a broken archive is retried ``retries`` times, then reported.
    An existing ``root/name`` is left untouched (nothing is overwritten).
    """
    datasets = DATASETS if datasets is None else datasets
    if name not in datasets:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(datasets))}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"--dir {root} is a file; choose a folder (it is created if missing)")
    target = root / name
    if target.exists():
        raise DataError(f"{target} already exists; remove it or choose another --dir")
    root.mkdir(parents=True, exist_ok=True)
    url = datasets[name]
    last_error: Exception | None = None
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as scratch:
        archive = Path(scratch) / f"{name}.zip"
        for _ in range(max(1, retries)):
            try:
                _fetch(url, archive, progress)
                with zipfile.ZipFile(archive) as bundle:
                    if bundle.testzip() is not None:
                        raise DataError(f"{url}: archive is corrupt")
                    bundle.extractall(Path(scratch) / "extracted")
                break
            except (DataError, URLError, OSError, zipfile.BadZipFile) as error:
                last_error = error
        else:
            reason = str(last_error).splitlines()[0] if last_error else "unknown error"
            raise DataError(f"could not download {name} after {retries} tries: {reason}")
        extracted = Path(scratch) / "extracted"
        entries = list(extracted.iterdir())
        source = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
        shutil.move(str(source), str(target))
    return target
