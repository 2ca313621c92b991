"""Translating images of any size with a trained generator."""

from __future__ import annotations

import mimetypes
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from sesim import errors
from sesim.data.images import (
    IMAGE_EXTENSIONS,
    list_images,
    load_rgb,
    same_size_batches,
    to_image,
    to_tensor,
)
from sesim.errors import DataError, DiskFull, Interrupted, disk_full, is_disk_full
from sesim.inference.tiling import auto_tile, bytes_per_pixel, count_tiles, fit_tile, translate_tiled
from sesim.outputs import refuse_existing, written_in_place
from sesim.runtime import available_memory, is_out_of_memory

# The generator's reflection pads need at least 2 pixels at quarter resolution.
MIN_SIZE = 8


def pad_to_multiple(images: torch.Tensor, multiple: int = 4) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the bottom/right to multiples of ``multiple`` and at least
    ``MIN_SIZE`` (reflection where it fits, replication for tiny images); returns the padded batch
    and the original ``(H, W)``."""
    height, width = images.shape[-2:]
    pad_h = max(MIN_SIZE, height + -height % multiple) - height
    pad_w = max(MIN_SIZE, width + -width % multiple) - width
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
    return images, (height, width)


@torch.no_grad()
def translate_tensor(
    generator: nn.Module, images: torch.Tensor, autocast: torch.dtype | None = None, style: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, 3, H, W)`` in ``[-1, 1]``, any ``H, W`` -> translated float32 batch of the same size.
    ``autocast=torch.bfloat16`` runs the generator under bf16 autocast (fast on GPUs); ``style``
    (``(style_dim,)``) is the code of a multi-modal generator."""
    padded, (height, width) = pad_to_multiple(images)
    return run_generator(generator, padded, autocast, style)[:, :, :height, :width].float()


def run_generator(
    generator: nn.Module, images: torch.Tensor, autocast: torch.dtype | None = None, style: torch.Tensor | None = None
) -> torch.Tensor:
    """One generator call on padded ``images``: in the generator's dtype (float64 generators of
    fp64 reference runs), under ``autocast`` when given, with ``style`` for a multi-modal one."""
    images = images.to(next(generator.parameters()).dtype)
    with torch.autocast(images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        if style is None:
            return generator(images)
        return generator(images, style.to(images.device).expand(len(images), -1))


class OutOfMemory(errors.OutOfMemory, DataError):
    """An image too large to translate whole in the memory there is."""


@dataclass(frozen=True)
class Job:
    """One input and the file(s) its translation goes to (one per style code)."""

    source: Path
    targets: tuple[Path, ...]


def plan_outputs(inputs: list[Path], source: Path, output: Path, styles: int = 0) -> tuple[list[Job], list[str]]:
    """Where each translation is written, and notes on names that had to change.

    A folder gives ``output/<stem>.png``; inputs that share a stem (``a.jpg``, ``a.png``) keep
    their extension in the name (``a_jpg.png``, ``a_png.png``) so neither overwrites the other. A
    file gives ``output`` itself when it has an image extension, else ``output/<stem>.png`` (a
    known file type such as ``out.txt`` is refused rather than made a folder; ``out.v2`` is one). With
    ``styles`` K > 0 every name gets ``_s0 ... _sK-1``.
    """
    notes: list[str] = []
    suffix = output.suffix.lower()
    if source.is_dir() and suffix in IMAGE_EXTENSIONS:
        raise DataError(f"output {output}: a folder of inputs is translated into a folder; give a folder name")
    if not source.is_dir() and suffix not in IMAGE_EXTENSIONS and suffix in Image.registered_extensions():
        raise DataError(f"output {output}: cannot write {suffix} images; use one of {', '.join(IMAGE_EXTENSIONS)}")
    # Python's own table, not the system's (/etc/mime.types makes out.d and results.old file types)
    known = suffix not in IMAGE_EXTENSIONS and mimetypes.MimeTypes().guess_type(output.name)[0]
    if not source.is_dir() and known and not output.is_dir():
        raise DataError(  # out.txt, out.pdf: a file name, not meant as a folder (out.v2 still is one)
            f"output {output}: a {suffix} file cannot hold an image; give an image name "
            f"({', '.join(IMAGE_EXTENSIONS)}) or a folder"
        )
    if source.is_dir():
        stems: dict[str, list[Path]] = {}
        for path in inputs:
            stems.setdefault(path.stem.lower(), []).append(path)
        names = []
        for path in inputs:
            shared = len(stems[path.stem.lower()]) > 1
            names.append(output / (f"{path.stem}_{path.suffix[1:].lower()}.png" if shared else f"{path.stem}.png"))
        for group in (g for g in stems.values() if len(g) > 1):
            notes.append(f"{', '.join(p.name for p in group)} share a name: their translations keep the extension")
    elif output.suffix.lower() in IMAGE_EXTENSIONS:
        names = [output]
    else:
        names = [output / (source.stem + ".png")]
    jobs = [
        Job(path, tuple(name.with_name(f"{name.stem}_s{k}{name.suffix}") for k in range(styles)) if styles else (name,))
        for path, name in zip(inputs, names, strict=True)
    ]
    return jobs, notes


def check_outputs(
    jobs: list[Job], source: Path, output: Path, overwrite: bool, skip_existing: bool = False
) -> set[Path]:
    """Refuse outputs that would replace an input or an existing file, land among the inputs, or collide
    (``skip_existing``: existing files are kept and not translated again, so they are no reason to refuse).
    Returns the targets that exist already."""
    seen: dict[str, Path] = {}
    for job in jobs:
        for target in job.targets:
            key = str(target.resolve()).lower()
            if key in seen:
                raise DataError(f"output: {seen[key]} and {target} would be the same file; rename one input")
            seen[key] = target
    existing = {target for job in jobs for target in job.targets if target.exists()}
    if overwrite:
        return existing
    if source.is_dir():
        folder, out = source.resolve(), output.resolve()
        if out == folder or folder in out.parents:
            raise DataError(
                f"output: {output} is inside the input folder {source}, where translations would mix with "
                "the inputs; choose another folder or pass --overwrite"
            )
    inputs = {job.source.resolve() for job in jobs}
    for job in jobs:
        for target in job.targets:
            if target.resolve() in inputs:
                raise DataError(
                    f"output: {target} is an input image and would be overwritten; choose another output "
                    "or pass --overwrite"
                )
    if not skip_existing:
        refuse_existing([target for job in jobs for target in job.targets if target in existing], "output")
    return existing


def translate_paths(
    generator: nn.Module,
    source: str | Path,
    output: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    autocast: torch.dtype | None = None,
    styles: torch.Tensor | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    skip_existing: bool = False,
    skip_unreadable: bool = False,
    name_styles: bool = True,
) -> Translated:
    """Translate a file or every image of a folder; consecutive images of one size share a batch.

    Output names: see :func:`plan_outputs`; an output that is an input file or lies inside the
    input folder, or that exists already, is refused unless ``overwrite``. ``tile``: ``None`` translates whole images
    unless the memory estimate says one would not fit (then tiles of a size that does), ``0``
    always whole, ``N`` in ``N x N`` tiles (:func:`sesim.inference.tiling.translate_tiled`) for any image
    larger than that. ``progress``: a bar over images and tiles (``None``: on a terminal only).
    ``skip_existing`` translates only what has no output yet (the rest of a folder after a stop or
    an unreadable image). ``skip_unreadable``: an input that cannot be read is skipped with a
    warning on stderr (the result lists it; the caller decides what that means) instead of
    stopping there. ``name_styles=False``: one style (a reference image's), outputs named as
    without styles (no ``_s0``). Each output is written under a temporary name and then renamed, so a stop
    never leaves a truncated image behind to be taken for a finished one.

    Returns the written paths (a list), with ``notes`` for the user (renamed outputs, automatic
    tiling, inputs already done) and the ``skipped`` unreadable inputs' errors.
    """
    if overwrite and skip_existing:
        raise DataError("--overwrite replaces existing outputs, --skip-existing keeps them: give one")
    source, output, device = Path(source), Path(output), torch.device(device)
    result = Translated()
    if styles is not None and not name_styles and len(styles) != 1:
        raise ValueError(f"name_styles=False takes one style, got {len(styles)}")
    count = len(styles) if styles is not None and name_styles else 0
    jobs, keep, notes = pending_jobs(source, output, count, overwrite, skip_existing)
    result.notes += notes
    if not jobs:
        return result
    try:
        jobs[0].targets[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"output: cannot create {jobs[0].targets[0].parent} ({error.strerror or error})") from None
    per_pixel = bytes_per_pixel(generator, device) if tile is None else 0.0
    free = available_memory(device) if tile is None else None
    codes = [None] if styles is None else list(styles)
    bar = tqdm(total=len(jobs), unit="image", disable=None if progress is None else not progress, leave=False)
    try:
        images_in_order = readable(jobs, result.skipped if skip_unreadable else None, bar)
        for group in same_size_batches(images_in_order, lambda item: item[1].size, batch_size):
            side, parts, note = fit_in_memory(group, tile, free, per_pixel)
            result.notes += [note] if note else []
            for part in parts:
                images = torch.stack([to_tensor(image) for _, image in part]).to(device)
                for k, code in enumerate(codes):
                    translations = _translate_batch(generator, images, autocast, code, side, overlap, bar, part)
                    for (job, _), translation in zip(part, translations, strict=True):
                        if job.targets[k] not in keep:
                            save_image(to_image(translation), job.targets[k])
                            result.append(job.targets[k])
                bar.update(len(part))
    except (DataError, DiskFull, KeyboardInterrupt) as stop:
        if result and len(jobs) > 1:
            rest = (
                f"{len(result)} output(s) written to {result[0].parent}; "
                "rerun with --skip-existing to translate only the rest"
            )
            if isinstance(stop, KeyboardInterrupt):
                raise Interrupted(f"interrupted; {rest}") from None
            raise type(stop)(f"{stop}; {rest}") from None
        raise
    finally:
        bar.close()
    return result


class Translated(list):
    """The paths :func:`translate_paths` wrote, in order, with what the user should be told."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []  # renamed outputs, automatic tiling, inputs that were done already
        self.skipped: list[str] = []  # the errors of unreadable inputs that were skipped


def pending_jobs(
    source: Path, output: Path, styles: int, overwrite: bool, skip_existing: bool
) -> tuple[list[Job], set[Path], list[str]]:
    """The inputs of ``source`` with their output names, checked (:func:`check_outputs`); with
    ``skip_existing``, only those without all their outputs yet; the outputs to keep; notes for
    the user (renamed outputs, inputs already done)."""
    if not source.exists():
        raise DataError(f"input not found: {source}")
    inputs = list_images(source, "input") if source.is_dir() else [source]
    jobs, notes = plan_outputs(inputs, source, output, styles)
    existing = check_outputs(jobs, source, output, overwrite, skip_existing)
    keep = existing if skip_existing else set()
    if keep:
        done = [job for job in jobs if keep.issuperset(job.targets)]
        jobs = [job for job in jobs if not keep.issuperset(job.targets)]
        if done:
            notes.append(f"--skip-existing: {len(done)} of {len(done) + len(jobs)} inputs already have their outputs")
    return jobs, keep, notes


def fit_in_memory(
    group: list, tile: int | None, free: int | None, per_pixel: float
) -> tuple[int, list[list], str | None]:
    """How a batch of one size runs: the tile side (0: whole images), the parts it is run in (the
    batch, or one image at a time when the batch, or an image, would not fit), and a note for
    the user when it is tiled because it would not fit whole."""
    width, height = group[0][1].size
    if tile is not None:
        return tile, [group], None
    fitting = auto_tile(height * width, free, per_pixel)
    if fitting is not None:  # one image does not fit
        side = fit_tile(height, width, fitting)
        need = height * width * per_pixel / 2**30
        note = (
            f"{group[0][0].source.name} ({width}x{height}) would need ~{need:.1f} GiB, {free / 2**30:.1f} "
            f"GiB are free: translated in {side}x{side} tiles (--tile N to choose)"
        )
        return side, [[item] for item in group], note
    if auto_tile(len(group) * height * width, free, per_pixel) is not None:
        return 0, [[item] for item in group], None  # the batch does not fit, one image does
    return 0, [group], None


def readable(jobs: list[Job], unreadable: list[str] | None, bar):
    """``(job, image)`` for every input in order; an unreadable one stops the folder (``unreadable``
    is ``None``) or is skipped with one line on stderr and its error kept in ``unreadable``."""
    for job in jobs:
        try:
            image = load_rgb(job.source)
        except DataError as error:
            if unreadable is None:
                raise
            unreadable.append(str(error))
            bar.write(f"warning: skipped: {error}", file=sys.stderr)
            bar.update(1)
            continue
        yield job, image


def save_image(image: Image.Image, path: Path) -> None:
    """Write ``image`` to ``path`` through a temporary file beside it: the name appears only complete."""
    try:
        with written_in_place(path) as partial:
            image.save(partial, format=Image.registered_extensions()[path.suffix.lower()])
    except OSError as error:
        if is_disk_full(error):
            raise disk_full(path.parent, None, path.name, "free some space") from None
        raise


def _translate_batch(generator, images, autocast, style, tile: int, overlap, bar, group) -> torch.Tensor:
    height, width = images.shape[-2:]
    try:
        if not tile or max(height, width) <= tile:
            return translate_tensor(generator, images, autocast, style)
        results = []
        for image in images:
            padded, (h, w) = pad_to_multiple(image[None])

            def run(piece: torch.Tensor) -> torch.Tensor:
                return run_generator(generator, piece, autocast, style)

            tiles = tqdm(
                total=count_tiles(*padded.shape[-2:], tile, overlap), unit="tile", disable=bar.disable, leave=False
            )
            out = translate_tiled(run, padded, tile, overlap, progress=tiles.update)
            tiles.close()
            results.append(out[0, :, :h, :w])
        return torch.stack(results)
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        name = group[0][0].source
        smaller = max(64, tile // 2 - tile // 2 % 64) if tile else 1024
        raise OutOfMemory(
            f"translating {name} ({width}x{height}) ran out of memory; translate it in tiles: --tile {smaller}"
            + (" (or smaller), or --batch-size 1" if len(images) > 1 else " (or smaller)")
        ) from None
