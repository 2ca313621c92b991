"""ATen ops one training step dispatches, per method and precision, and any op that waits for the host.

On a GPU at batch 1 a step is bound by kernel launches (~37 us each on an H200), so the ops a step
dispatches are its launch count; they do not depend on the machine, so this runs on the CPU (cheap,
in CI). Views (``aten.view``, ``aten.t`` ...) and allocations (``aten.empty`` ...) launch nothing
and are counted apart (as ``views``). Host syncs are
the ops that on a GPU make the host wait for the device (``_local_scalar_dense``, ``nonzero``,
copies to the CPU ...): a step that dispatches one cannot be captured as one CUDA graph.

The step is the one ``sesim train`` runs with the preset's defaults (NaN guard on), the same
networks at a small crop (the op count does not depend on the size); the first step is a warm-up
(pool filling aside, the second and later steps dispatch the same ops).

    python benchmarks/op_count.py                      # fsesim, lsesim; fp32 and bf16
    python benchmarks/op_count.py --methods cut --precisions fp32 --by-op
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parent))
from common import machine

# Ops that make the host wait for the device's result (or move data to the host).
HOST_SYNC_OPS = {"aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item", "aten.equal"}
# Ops that only allocate (no kernel on a GPU), counted apart like views.
ALLOCATIONS = {"aten.empty", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided", "aten.empty_like"}


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched inside it: ``ops`` (those that launch a kernel), ``views`` and
    allocations (which launch none) and ``host_syncs``."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.views: Counter[str] = Counter()
        self.host_syncs: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in HOST_SYNC_OPS or (name.startswith("aten._to_copy") and _to_cpu(args, kwargs or {})):
            self.host_syncs[name] += 1
        if name.startswith("profiler."):  # record_function markers of optimizer.step: no kernel
            return func(*args, **(kwargs or {}))
        if (
            func.is_view
            or name in ALLOCATIONS
            or name in {"aten.detach", "aten.lift_fresh", "aten.alias", "aten._unsafe_view"}
        ):
            self.views[name] += 1
        else:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _to_cpu(args, kwargs) -> bool:
    """A ``_to_copy`` from a device tensor onto the CPU (a device-to-host copy)."""
    device = kwargs.get("device")
    source = args[0] if args else None
    return device is not None and torch.device(device).type == "cpu" and source.device.type != "cpu"


def count_step(preset: str, precision: str, size: int = 64, batch: int = 1, overrides: tuple[str, ...] = ()) -> dict:
    """Ops of one training step of ``preset`` (after one warm-up step), on the CPU."""
    from sesim.config import load_config
    from sesim.training.loop import build_method

    config = load_config(
        preset,
        [
            "loss.backbone_weights=random",
            f"data.crop_size={size}",
            f"data.load_size={size}",
            f"train.precision={precision}",
            f"train.batch_size={batch}",
            *overrides,
        ],
    )
    device = torch.device("cpu")
    torch.manual_seed(0)
    method = build_method(config, device).place(device)  # as the loop places it (bf16: a bf16 backbone)
    query_rng = torch.Generator().manual_seed(0)
    real_a, real_b = torch.rand(2, batch, 3, size, size) * 2 - 1
    method.training_step(real_a, real_b, query_rng)  # warm-up: lazy state, pool slots
    counter = OpCounter()
    with counter:
        method.training_step(real_a, real_b, query_rng)
    return {
        "method": preset,
        "precision": precision,
        "ops": sum(counter.ops.values()),
        "views": sum(counter.views.values()),
        "host_syncs": dict(counter.host_syncs),
        "by_op": dict(counter.ops.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["fsesim", "lsesim"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=64, help="crop side (the count does not depend on it)")
    parser.add_argument("--by-op", action="store_true", help="also print the count of every op")
    args = parser.parse_args()
    rows = []
    for preset in args.methods:
        for precision in args.precisions:
            row = count_step(preset, precision, args.size)
            if not args.by_op:
                row.pop("by_op")
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "by_op"}), file=sys.stderr, flush=True)
    result = {"benchmark": "op_count", "size": args.size, **machine(torch.device("cpu")), "results": rows}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
