"""Two folders of images, sampled independently: the unpaired training set."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from sesim.data.images import image_size, list_images, load_rgb, to_tensor
from sesim.data.transforms import Preprocess, augment, multiple_of_4_size
from sesim.errors import DataError

SKIP_HINT = "--set data.on_bad_image=skip skips unreadable images"


def domain_folders(root: str | Path, split: str = "train") -> tuple[Path, Path]:
    """``root/{split}A`` and ``root/{split}B``, the usual CycleGAN/CUT layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: folder not found: {root}")
    folders = root / f"{split}A", root / f"{split}B"
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DataError(f"--data: expected {split}A/ and {split}B/ inside {root}; missing {', '.join(missing)}")
    return folders


def mix_seed(*numbers: int) -> int:
    """A 63-bit seed from integers (splitmix-style), so every item has its own stream."""
    value = 0x9E3779B97F4A7C15
    for number in numbers:
        value ^= (number + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2)) & 0xFFFFFFFFFFFFFFFF
    return value & 0x7FFFFFFFFFFFFFFF


class UnpairedImages(Dataset):
    """Items ``{"a", "b", "path_a", "path_b"}`` from two folders.

    The dataset is indexed by a *global* sample number ``k``: epoch ``k // len``, position
    ``k % len``. Each epoch shuffles each domain with its own permutation, and every item's crop
    and flip come from a generator seeded by ``(seed, k)``: the data order and augmentation are a
    pure function of the seed and the step, whatever the number of workers, which is what makes
    resuming exact. ``cache=True`` keeps decoded images in memory (each loader worker holds its
    own copy): for small datasets whose decoding would otherwise dominate.
    """

    def __init__(
        self,
        folder_a: str | Path,
        folder_b: str | Path,
        seed: int = 0,
        preprocess: Preprocess = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        skip_bad: bool = False,
        cache: bool = False,
        zoom: tuple[float, float] = (0.5, 1.0),
    ) -> None:
        self.files_a = list_images(folder_a, "domain A")
        self.files_b = list_images(folder_b, "domain B")
        self.seed = seed
        self.geometry = {"preprocess": preprocess, "load_size": load_size, "crop_size": crop_size, "flip": flip,
                         "zoom": zoom}  # fmt: skip
        self.skip_bad = skip_bad
        self.cache: dict[Path, Image.Image] | None = {} if cache else None
        self.sizes: dict[Path, tuple[int, int]] = {}  # filled by check_survey
        self._epoch = -1
        self._perms: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def _permutations(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch != self._epoch or self._perms is None:
            gen_a = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 1))
            gen_b = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 2))
            self._perms = (
                torch.randperm(len(self.files_a), generator=gen_a),
                torch.randperm(len(self.files_b), generator=gen_b),
            )
            self._epoch = epoch
        return self._perms

    def paths(self, index: int, offset: int = 0) -> tuple[Path, Path]:
        """The two files of global sample ``index`` (``offset``: that many places further on)."""
        epoch, position = divmod(index, len(self))
        perm_a, perm_b = self._permutations(epoch)
        return (
            self.files_a[int(perm_a[(position + offset) % len(perm_a)])],
            self.files_b[int(perm_b[(position + offset) % len(perm_b)])],
        )

    def _load(self, index: int, domain: int, skipped: list[str]) -> tuple[Path, Image.Image]:
        """Decode the sample's image of one domain; with ``skip_bad``, unreadable files are noted
        in ``skipped`` and the next file of the same shuffled order takes their place."""
        files = self.files_a if domain == 0 else self.files_b
        for offset in range(len(files) if self.skip_bad else 1):
            path = self.paths(index, offset)[domain]
            if self.cache is not None and path in self.cache:
                return path, self.cache[path]
            try:
                image = load_rgb(path)
            except DataError as error:
                if not self.skip_bad:
                    raise DataError(f"{error} ({SKIP_HINT})") from None
                skipped.append(str(path))
                continue
            if self.cache is not None:
                self.cache[path] = image
            return path, image
        raise DataError(f"domain {'AB'[domain]}: no readable image among {len(files)} files")

    def __getitem__(self, index: int) -> dict:
        items: dict = {}
        skipped: list[str] = []
        for domain, name, salt in ((0, "a", 3), (1, "b", 4)):
            path, image = self._load(index, domain, skipped)
            generator = torch.Generator().manual_seed(mix_seed(self.seed, index, salt))
            items[name] = to_tensor(augment(image, generator, **self.geometry))
            items[f"path_{name}"] = str(path)
        # A string collates into a list whatever the count; the engine splits it again.
        items["skipped"] = "\n".join(skipped)
        return items


SURVEY_THREADS = 8  # files opened at once when a start reads every header


class Survey(NamedTuple):
    """What the files of a training set hold: each readable file's size (width, height, as shown),
    and the unreadable files' one-line reasons."""

    sizes: dict[Path, tuple[int, int]]
    unreadable: list[str]


def survey(files: list[Path], decode: bool = False) -> Survey:
    """Open every file's header (``decode``: decode every image in full, as training will), on a
    few threads: reading files waits on the disk (a network file system above all), not on Python."""

    def read(path: Path) -> tuple[int, int] | str:
        try:
            return load_rgb(path).size if decode else image_size(path)
        except DataError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=SURVEY_THREADS) as pool:
        found = list(pool.map(read, files))
    sizes = {path: size for path, size in zip(files, found, strict=True) if not isinstance(size, str)}
    return Survey(sizes, [reason for reason in found if isinstance(reason, str)])


def check_survey(dataset: UnpairedImages, decode: bool = False) -> list[str]:
    """Every check the training set's files allow before the first step (a dry run makes them all;
    a real start those that would otherwise crash mid-run): unreadable files (an error unless
    ``data.on_bad_image=skip``), and one shape to batch when whole images are trained on
    (``data.preprocess=none``). Returns what was found, one line each."""
    found = []
    for domain, files in (("A", dataset.files_a), ("B", dataset.files_b)):
        sizes, unreadable = survey(files, decode)
        if unreadable and not dataset.skip_bad:
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise DataError(f"{unreadable[0]}{more} ({SKIP_HINT})")
        if not sizes:
            raise DataError(f"domain {domain}: none of the {len(files)} images can be read ({unreadable[0]})")
        if unreadable:
            found.append(f"domain {domain}: {len(unreadable)} unreadable image(s) will be skipped: {unreadable[0]}")
        dataset.sizes.update(sizes)
    if dataset.geometry["preprocess"] == "none":
        check_one_shape(dataset.sizes)
    what = "decoded" if decode else "headers read"
    found.append(f"{len(dataset.sizes)} images {what}")
    if note := oversized(dataset):
        found.append(note)
    return found


OVERSIZE = 4  # an image whose short side is this many times data.load_size is mostly decoded to be thrown away


def oversized(dataset: UnpairedImages) -> str | None:
    """A note on training images far larger than the size they are shrunk to (``resize_and_crop``,
    ``zoom_and_crop``): each is decoded in full every time it is drawn, which can make loading,
    not the step, what a run waits for (one 120-megapixel PNG beside seven 256 px tiles, shrunk to
    72 px for the demo's network: 2.0 instead of 49 images/s on a 2-core CPU, benchmarks/RESULTS.md)."""
    load_size = dataset.geometry["load_size"]
    if dataset.geometry["preprocess"] not in ("resize_and_crop", "zoom_and_crop"):
        return None
    large = {path: size for path, size in dataset.sizes.items() if min(size) > OVERSIZE * load_size}
    if not large:
        return None
    path, (width, height) = max(large.items(), key=lambda item: item[1][0] * item[1][1])
    return (
        f"{len(large)} image(s) over {OVERSIZE}x data.load_size={load_size} on their short side (largest {path}, "
        f"{width}x{height}) are decoded in full and shrunk each time they are drawn, which slows loading; "
        f"a copy of the data resized once (e.g. to {2 * load_size} px) loads faster"
    )


def check_one_shape(sizes: dict[Path, tuple[int, int]]) -> None:
    """Whole images (``data.preprocess=none``) batch, pool and meet their translations only when
    every one has the same size as trained (multiples of 4)."""
    shapes: dict[tuple[int, int], Path] = {}
    for path, size in sizes.items():
        shapes.setdefault(multiple_of_4_size(size), path)
    if len(shapes) > 1:
        (first, path_1), (second, path_2) = list(shapes.items())[:2]
        raise DataError(
            f"data.preprocess=none trains on whole images, which must share one size: {path_1} is "
            f"{first[0]}x{first[1]}, {path_2} {second[0]}x{second[1]} (as trained, multiples of 4; "
            f"{len(shapes)} sizes in all); resize them to one size, or --set data.preprocess=resize_and_crop"
        )


class StepSampler(Sampler[int]):
    """Global sample numbers ``start, start + 1, ...`` (endless): resume = start further on.

    With several processes, rank ``r`` of ``w`` takes every ``w``-th number.
    """

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        index = self.start + self.rank
        while True:
            yield index
            index += self.world_size
