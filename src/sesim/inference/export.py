"""Export a trained generator for deployment: ONNX (checked with onnxruntime) or TorchScript.

Both take any batch size and any height and width of at least 8: the exported model pads the
bottom and right to multiples of 4 by reflection and crops the result back, exactly as
``sesim translate`` does. Input and output are ``(B, 3, H, W)`` RGB in ``[-1, 1]``; a multi-modal
generator takes its ``(B, style_dim)`` style codes as a second input, ``style``. Each file
carries its metadata (value range, channel order, layout, method, SeSim version): ONNX as
``metadata_props``, TorchScript as the extra file ``sesim.json``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sesim import __version__
from sesim.checkpoint import checkpoint_file, load_checkpoint
from sesim.data.images import load_rgb, to_tensor
from sesim.errors import ExportError
from sesim.inference.loading import load_generator
from sesim.inference.translate import MIN_SIZE, translate_tensor
from sesim.outputs import check_output_file, written_in_place

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}


def _pad(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2], images.shape[-1]
    return F.pad(images, (0, (4 - width % 4) % 4, 0, (4 - height % 4) % 4), mode="reflect")


class AnySize(nn.Module):
    """The generator for any ``H, W >= 8``: reflection-pad bottom/right to multiples of 4, crop back."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator(_pad(images))[:, :, : images.shape[-2], : images.shape[-1]]


class AnySizeStyled(nn.Module):
    """A multi-modal generator for any ``H, W >= 8``, with its style code as a second input."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.generator(_pad(images), style)[:, :, : images.shape[-2], : images.shape[-1]]


STYLE_NOTE = (
    "style: float32 (B, {dim}), the style code of each image: zeros is the prior's mean (sesim translate's "
    "default), N(0, 1) draws are the other styles (translate --num-styles); a reference image's style needs "
    "the style encoder, which is not exported (translate --style-from)"
)


def metadata(config: dict, step: int, style_dim: int | None = None, direction: str = "AtoB") -> dict[str, str]:
    """What a deployment needs to know about the exported generator (``config``: the stored run
    config; ``style_dim``: a multi-modal generator's second input; ``direction``: which of the
    run's generators, A and B as it trained them)."""
    info = {
        "producer": "sesim",
        "sesim_version": __version__,
        "input": "images: float32 (B, 3, H, W), RGB, values in [-1, 1] (pixel / 127.5 - 1); H, W >= 8",
        "output": "translated: float32 (B, 3, H, W), RGB, values in [-1, 1]",
        "channel_order": "RGB",
        "layout": "NCHW",
        "value_range": "[-1, 1]",
        "method": str(config.get("method")),
        "preset": str(config.get("name")),
        "structure_term": str(config.get("loss", {}).get("structure")),
        "direction": str(config.get("data", {}).get("direction")),
        "translates": "A to B" if direction == "AtoB" else "B to A (the run's B->A generator)",
        "trained_steps": str(step),
    }
    if style_dim is not None:
        info["inputs"] = "images, style"
        info["style"] = STYLE_NOTE.format(dim=style_dim)
    return info


def export_format(output: str | Path) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"output {output}: use a .onnx (ONNX) or .pt/.ts (TorchScript) file name")
    return FORMATS[suffix]


def _to_onnx(generator: nn.Module, example: tuple[torch.Tensor, ...], output: Path, info: dict[str, str]) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'sesim[export]'") from None
    batch = torch.export.Dim("batch")
    height, width = torch.export.Dim("height", min=MIN_SIZE), torch.export.Dim("width", min=MIN_SIZE)
    shapes = {"images": {0: batch, 2: height, 3: width}}
    module, names = AnySize(generator), ["images"]
    if len(example) == 2:
        shapes["style"] = {0: batch}
        module, names = AnySizeStyled(generator), ["images", "style"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, example, input_names=names, output_names=["translated"],
            dynamic_shapes=shapes, dynamo=True, verbose=False,
        )  # fmt: skip
    program.save(str(output))
    model = onnx.load(str(output))
    onnx.helper.set_model_props(model, info)
    onnx.save(model, str(output))


def _to_torchscript(
    generator: nn.Module, example: tuple[torch.Tensor, ...], output: Path, info: dict[str, str]
) -> None:
    wrapper = AnySizeStyled if len(example) == 2 else AnySize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(wrapper(torch.jit.trace(generator, example)))
        torch.jit.save(scripted, str(output), _extra_files={"sesim.json": json.dumps(info, indent=1)})


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an export carries."""
    if export_format(path) == "onnx":
        import onnx

        return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    files = {"sesim.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=files)
    return json.loads(files["sesim.json"])


def run_exported(path: str | Path, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
    """Run an exported file on ``(B, 3, H, W)`` images (and ``(B, style_dim)`` style codes, for a
    multi-modal generator): ONNX through onnxruntime, TorchScript through ``torch.jit.load``."""
    inputs = {"images": images} if style is None else {"images": images, "style": style}
    if export_format(path) == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ExportError("checking an ONNX file needs onnxruntime: pip install 'sesim[export]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        return torch.from_numpy(result)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream; still asked for
        return torch.jit.load(str(path))(*inputs.values())


class ExportMismatch(RuntimeError):
    """The exported model's output is further from PyTorch's than the tolerance: nothing was written."""

    def __init__(self, gap: float, tolerance: float) -> None:
        super().__init__(f"the export differs from PyTorch by {gap:.2e} (> {tolerance:g})")
        self.gap, self.tolerance = gap, tolerance


def export_generator(
    checkpoint: str | Path,
    output: str | Path,
    check_image: str | Path | None = None,
    overwrite: bool = False,
    tolerance: float | None = None,
    direction: str = "AtoB",
) -> float:
    """Write the checkpoint's generator to ``output`` (format from the suffix) and compare the
    exported model with ``sesim translate``'s PyTorch path on ``check_image`` (any size; default a
    253x190 test pattern, not a multiple of 4); returns the largest absolute difference.

    An existing ``output`` is replaced only with ``overwrite``, and never when it is the checkpoint
    itself (or a hard link to it, as ``latest.pt`` is to the newest step file). The export is
    written beside ``output`` and renamed onto it when complete, so a failed export replaces nothing;
    nor does one whose difference is over ``tolerance`` (:class:`ExportMismatch`)."""
    output = Path(output)
    kind = export_format(output)
    source = checkpoint_file(checkpoint)
    check_output_file(output, source, "the checkpoint being exported", "output", overwrite)
    checkpoint = load_checkpoint(source)
    generator, _ = load_generator(source, "cpu", checkpoint, direction)
    style_dim = getattr(generator, "style_dim", None)
    info = metadata(checkpoint["config"], checkpoint["step"], style_dim, direction)
    if check_image is not None:
        images = to_tensor(load_rgb(check_image)).unsqueeze(0)
    else:
        rows, cols = torch.linspace(-1, 1, 190), torch.linspace(-1, 1, 253)
        images = torch.stack([cols[None, :].expand(190, 253), rows[:, None].expand(190, 253), rows.outer(cols)])[None]
    if min(images.shape[-2:]) < MIN_SIZE:
        raise ExportError(f"--check-image {check_image}: at least {MIN_SIZE}x{MIN_SIZE} pixels are needed")
    output.parent.mkdir(parents=True, exist_ok=True)
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, 3, 64, 64),)
    style = None
    if style_dim is not None:  # checked on a drawn style, not only the zeros of the default
        example = (*example, torch.zeros(2, style_dim))
        style = torch.randn(1, style_dim, generator=torch.Generator().manual_seed(0)).expand(len(images), -1)
    with written_in_place(output) as partial:
        (_to_onnx if kind == "onnx" else _to_torchscript)(generator, example, partial, info)
        # the same padding as sesim translate
        expected = translate_tensor(generator, images, style=None if style is None else style[0])
        gap = (run_exported(partial, images, style) - expected).abs().max().item()
        if tolerance is not None and not gap <= tolerance:  # NaN fails too
            raise ExportMismatch(gap, tolerance)
    return gap
