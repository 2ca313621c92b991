"""Two folders of images, sampled independently: the unpaired training set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from sesim.data.images import DataError, list_images, load_rgb, to_tensor
from sesim.data.transforms import Preprocess, augment


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
            except DataError:
                if not self.skip_bad:
                    raise
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
