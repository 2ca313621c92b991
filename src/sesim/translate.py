"""Translating images of any size with a trained generator."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sesim.data.images import IMAGE_EXTENSIONS, DataError, list_images, load_rgb, to_image, to_tensor

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
    with torch.autocast(images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        if style is None:
            translated = generator(padded)
        else:
            translated = generator(padded, style.to(padded.device).expand(len(padded), -1))
    return translated[:, :, :height, :width].float()


def _outputs(inputs: list[Path], source: Path, output: Path) -> list[Path]:
    if source.is_dir():
        return [output / (p.stem + ".png") for p in inputs]
    if output.suffix.lower() in IMAGE_EXTENSIONS:
        return [output]
    return [output / (source.stem + ".png")]


def translate_paths(
    generator: nn.Module,
    source: str | Path,
    output: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    autocast: torch.dtype | None = None,
    styles: torch.Tensor | None = None,
) -> list[Path]:
    """Translate a file or every image of a folder; consecutive images of one size share a batch.

    Output: for a folder, ``output/<stem>.png`` each; for a file, ``output`` itself when it has an
    image extension, else ``output/<stem>.png``. With ``styles`` (``(K, style_dim)``, a
    multi-modal generator) every input gets K outputs ``<stem>_s<k>.png``.
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise DataError(f"input not found: {source}")
    inputs = list_images(source, "input") if source.is_dir() else [source]
    targets = _outputs(inputs, source, output)
    try:
        targets[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"output: cannot create {targets[0].parent} ({error.strerror or error})") from None
    written: list[Path] = []
    for group in _same_size_groups(zip(inputs, targets, strict=True), batch_size):
        batch = torch.stack([to_tensor(image) for _, _, image in group]).to(device)
        if styles is None:
            for (_, target, _), result in zip(group, translate_tensor(generator, batch, autocast), strict=True):
                to_image(result).save(target)
                written.append(target)
            continue
        for k, style in enumerate(styles):
            for (_, target, _), result in zip(group, translate_tensor(generator, batch, autocast, style), strict=True):
                styled = target.with_name(f"{target.stem}_s{k}.png")
                to_image(result).save(styled)
                written.append(styled)
    return written


def _same_size_groups(pairs: Iterable[tuple[Path, Path]], batch_size: int):
    group: list = []
    for path, target in pairs:
        image = load_rgb(path)
        if group and (image.size != group[0][2].size or len(group) == batch_size):
            yield group
            group = []
        group.append((path, target, image))
    if group:
        yield group
