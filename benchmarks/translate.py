"""Inference speed of the paper's generator (ngf 64, 9 blocks) at 256x256: PyTorch eager fp32,
bf16 autocast, torch.compile, and the exported ONNX model under onnxruntime (CPU only).

Prints one JSON object with the median time per batch and images/s for each setting; the
eager fp32 row is the baseline of the same run.

    python benchmarks/translate.py --device cuda --batch 1 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, median_ms
from sesim.networks import ResnetGenerator


def onnx_runner(generator: torch.nn.Module, example: torch.Tensor):
    import onnxruntime

    from sesim.inference.export import _to_onnx

    path = Path(tempfile.mkdtemp()) / "generator.onnx"
    _to_onnx(generator, example[:1, :, :64, :64].contiguous(), path, {})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = example.numpy()
    return lambda: session.run(None, {"images": images})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--size", type=int, default=256, help="image side (smaller only for smoke runs)")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = ResnetGenerator().to(device).eval()
    compiled = None
    rows = []
    for batch in args.batch:
        images = torch.rand(batch, 3, args.size, args.size, device=device) * 2 - 1
        settings = {"eager fp32": (generator, None, torch.contiguous_format),
                    "eager fp32 channels-last": (generator, None, torch.channels_last)}  # fmt: skip
        if device.type == "cuda":
            settings["eager bf16"] = (generator, torch.bfloat16, torch.contiguous_format)
            settings["eager bf16 channels-last"] = (generator, torch.bfloat16, torch.channels_last)
        if not args.no_compile:
            if compiled is None:
                compiled = torch.compile(generator, mode="max-autotune" if device.type == "cuda" else None)
            precision = torch.bfloat16 if device.type == "cuda" else None
            settings["compiled channels-last"] = (compiled, precision, torch.channels_last)
        for name, (model, precision, layout) in settings.items():
            model.to(memory_format=layout)
            batch_in = images.contiguous(memory_format=layout)

            def run(model=model, precision=precision, batch_in=batch_in):
                with torch.no_grad(), torch.autocast(device.type, precision or torch.float32, enabled=bool(precision)):
                    return model(batch_in)

            ms = median_ms(run, device, args.repeats, warmup=3)
            rows.append(
                {"setting": name, "batch": batch, "median_ms": round(ms, 2), "images_per_s": round(batch * 1e3 / ms, 1)}
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if device.type == "cpu":
            generator.to(memory_format=torch.contiguous_format)
            ms = median_ms(onnx_runner(generator, images.cpu()), device, args.repeats, warmup=3)
            rows.append(
                {
                    "setting": "onnxruntime",
                    "batch": batch,
                    "median_ms": round(ms, 2),
                    "images_per_s": round(batch * 1e3 / ms, 1),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "translate", "size": args.size, **machine(device), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
