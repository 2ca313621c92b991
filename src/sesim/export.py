"""Export a trained generator for deployment: ONNX (checked with onnxruntime) or TorchScript.

Both take any batch size and any height and width that are multiples of 4 (pad other sizes as
``sesim.translate.pad_to_multiple`` does); input and output are ``(B, 3, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from sesim.data.images import load_rgb, to_tensor
from sesim.training.loop import load_generator
from sesim.translate import pad_to_multiple

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}


class ExportError(ValueError):
    """The export cannot be done as asked (format, missing package); the message says what to do."""


def export_format(output: str | Path) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"output {output}: use a .onnx (ONNX) or .pt/.ts (TorchScript) file name")
    return FORMATS[suffix]


def _to_onnx(generator: nn.Module, example: torch.Tensor, output: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'sesim[export]'") from None
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
    shapes = {"images": {0: batch, 2: 4 * height, 3: 4 * width}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            generator, (example,), input_names=["images"], output_names=["translated"], dynamic_shapes=shapes,
            dynamo=True, verbose=False,
        )  # fmt: skip
    program.save(str(output))


def _to_torchscript(generator: nn.Module, example: torch.Tensor, output: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(generator, example)
    traced.save(str(output))


def run_exported(path: str | Path, images: torch.Tensor) -> torch.Tensor:
    """Run an exported file on ``(B, 3, H, W)`` images: ONNX through onnxruntime, TorchScript
    through ``torch.jit.load``."""
    if export_format(path) == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ExportError("checking an ONNX file needs onnxruntime: pip install 'sesim[export]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"images": images.numpy()})
        return torch.from_numpy(result)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream; still asked for
        return torch.jit.load(str(path))(images)


def export_generator(checkpoint: str | Path, output: str | Path, check_image: str | Path | None = None) -> float:
    """Write the checkpoint's generator to ``output`` (format from the suffix) and compare the
    exported model with PyTorch on ``check_image`` (or a 256x256 test pattern); returns the
    largest absolute difference of the outputs."""
    output = Path(output)
    kind = export_format(output)
    generator, _ = load_generator(checkpoint, "cpu")
    if check_image is not None:
        images = to_tensor(load_rgb(check_image)).unsqueeze(0)
    else:
        ramp = torch.linspace(-1, 1, 256)
        images = torch.stack([ramp[None, :].expand(256, 256), ramp[:, None].expand(256, 256), ramp.outer(ramp)])[None]
    images, _ = pad_to_multiple(images)
    output.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, 64, 64)
    (_to_onnx if kind == "onnx" else _to_torchscript)(generator, example, output)
    with torch.no_grad():
        expected = generator(images)
    return (run_exported(output, images) - expected).abs().max().item()
