"""The whole training step as one CUDA graph (``train.cuda_graphs``).

At batch 1 a GPU step is bound by the host launching its kernels one by one (~500 kernels,
~37 us each on an H200), not by their arithmetic. A CUDA graph records the step once and
replays all of it with one launch. What the step needs for that, the method provides: no host
sync and no host-side decision inside it (the non-finite guard is fused Adam's ``found_inf``,
the image pool and the colour jitter draw on the device), fused Adam with ``capturable`` and its
learning rate as a device tensor the scheduler fills, and the random generators it draws from
registered with the graph.

The recipe is PyTorch's whole-network capture: a few eager steps on a side stream (lazy
initialisation, optimizer states, the pool's buffer), then the capture, whose batch is then
trained by the first replay; every later step copies its batch into the captured input buffers
and replays. Every one of these steps is a real training step: the numbers are the eager step's
(``tests/test_device.py`` holds them equal on a GPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from sesim.errors import ConfigError
from sesim.methods import OneSidedTranslation, TranslationMethod

WARMUP_STEPS = 3  # eager steps before the capture (PyTorch's recipe uses a few)

# torch.compile's modes that make CUDA graphs of their own, one per compiled module: under the
# whole-step graph they compile kernels only (the per-module graphs were what crashed, pytorch's
# "accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run").
COMPILE_UNDER_GRAPH = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}


def graph_support(method: TranslationMethod, device: torch.device, processes: int) -> str | None:
    """Why the step of ``method`` cannot be captured here, or ``None`` when it can."""
    if device.type != "cuda":
        return f"it needs a CUDA device (train.device is {device})"
    if processes > 1:
        return "it runs in one process (DDP's gradient hooks are not captured here)"
    if not isinstance(method, OneSidedTranslation):
        return f"only the one-sided methods' steps are free of host decisions (not {type(method).__name__})"
    if method.flip_equivariance:
        return "FastCUT's flip equivariance decides on the host which half of the steps mirror"
    if not all(optimizer.defaults.get("fused") for optimizer in method.optimizers.values()):
        return "it needs fused Adam"
    return None


def use_cuda_graphs(setting: str, method: TranslationMethod, device: torch.device, processes: int) -> bool:
    """``train.cuda_graphs``: ``auto`` captures where the step allows it, ``on`` insists (a
    ``ConfigError`` says why not), ``off`` never."""
    if setting == "off":
        return False
    reason = graph_support(method, device, processes)
    if reason is not None and setting == "on":
        raise ConfigError(f"train.cuda_graphs=on: the step cannot be captured: {reason}; use auto or off")
    return reason is None


def learning_rates_on_device(optimizers: dict[str, torch.optim.Optimizer], device: torch.device) -> None:
    """Make every learning rate a 0-d tensor on ``device`` (a replayed graph reads it there; the
    scheduler fills it in place) and the optimizers capturable. ``initial_lr`` stays a float,
    so the scheduler computes floats and never reads the device."""
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
            group["capturable"] = True


class CapturedStep:
    """``step(real_a, real_b) -> stats``: the method's training step, replayed as one CUDA graph
    after :data:`WARMUP_STEPS` eager ones.

    Args:
        method: the method (on the CUDA device, optimizers fused; see :func:`graph_support`).
        query_rng: the generator of query positions (a CUDA generator; registered with the graph).
        strict: raise when the capture fails; otherwise warn once and go on eagerly.
    """

    def __init__(self, method: TranslationMethod, query_rng: torch.Generator, strict: bool = False) -> None:
        self.method, self.query_rng, self.strict = method, query_rng, strict
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[Tensor, Tensor] | None = None
        self.outputs: dict[str, Tensor] = {}
        self.flags: dict[str, Tensor] = {}  # the non-finite guard's flags the graph writes
        self.eager_steps = 0
        self.failed: str | None = None
        self.side_stream = torch.cuda.Stream()

    def __call__(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        if self.graph is None:
            if self.failed is not None or self.eager_steps < WARMUP_STEPS:
                return self._eager(real_a, real_b)
            if not self._capture(real_a, real_b):
                return self._eager(real_a, real_b)
        inputs = self.inputs
        if inputs[0].shape != real_a.shape or inputs[1].shape != real_b.shape:  # e.g. a last, smaller batch
            return self.method.training_step(real_a, real_b, self.query_rng)
        inputs[0].copy_(real_a)
        inputs[1].copy_(real_b)
        self.graph.replay()
        self.method.skipped = self.flags  # the graph's own (an eager fallback above may have replaced them)
        return self.outputs

    def _eager(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        if self.failed is not None:
            return self.method.training_step(real_a, real_b, self.query_rng)
        # Warm-up on a side stream, as PyTorch's capture recipe asks (lazy work stays off the capture).
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream):
            stats = self.method.training_step(real_a, real_b, self.query_rng)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        self.eager_steps += 1
        return stats

    def _generators(self) -> list[torch.Generator]:
        """The non-default generators the step draws from (the default one is registered by PyTorch)."""
        found = [self.query_rng] if self.query_rng.device.type == "cuda" else []
        found += [pool.rng for pool in self.method.pools.values() if getattr(pool, "rng", None) is not None]
        return found

    def _capture(self, real_a: Tensor, real_b: Tensor) -> bool:
        """Record the step; the batch of this call is then trained by the first replay."""
        self.inputs = (real_a.clone(), real_b.clone())
        graph = torch.cuda.CUDAGraph()
        for rng in self._generators():
            graph.register_generator_state(rng)
        torch.cuda.synchronize()
        try:
            # thread_local: the data loader's pin-memory thread keeps calling CUDA while the main
            # thread captures; in the default "global" mode any such call invalidates the capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.outputs = self.method.training_step(*self.inputs, self.query_rng)
        except Exception as error:  # any capture failure: the eager step goes on
            if self.strict:
                raise
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            warnings.warn(
                f"train.cuda_graphs: the capture failed ({self.failed}); training goes on eagerly", stacklevel=2
            )
            torch.cuda.synchronize()
            self.inputs, self.outputs = None, {}
            return False
        self.graph, self.flags = graph, dict(self.method.skipped)
        return True


def step_function(
    method: TranslationMethod,
    query_rng: torch.Generator,
    captured: bool,
    strict: bool = False,
    compile_graphs: bool = False,
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """The loop's ``step(real_a, real_b)``: the captured step, or the method's eager one
    (``compile_graphs``: torch.compile's own CUDA graphs are in use, so every step starts a new
    generation of them)."""
    if captured:
        return CapturedStep(method, query_rng, strict)

    def step(real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        if compile_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return method.training_step(real_a, real_b, query_rng)

    return step


def prepare_step(
    method: TranslationMethod,
    query_rng: torch.Generator,
    cuda_graphs: str,
    compile_mode: str,
    device: torch.device,
    processes: int,
    distribute: Callable[[], None] | None = None,
    strict: bool | None = None,
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """``train.cuda_graphs`` and ``train.compile`` applied to a placed method, as ``sesim train``
    runs it (the benchmarks build their steps through here too): compile (kernels only under the
    whole-step graph), ``distribute`` (DDP wrapping, between compile and capture), learning rates on
    the device for a capture, and the step function. ``strict``: a failed capture raises (default:
    only with ``cuda_graphs=on``)."""
    captured = use_cuda_graphs(cuda_graphs, method, device, processes)
    mode = COMPILE_UNDER_GRAPH.get(compile_mode, compile_mode) if captured else compile_mode
    if mode != "off":
        for module in method.compile_targets():
            module.compile(mode=mode)
    if distribute is not None:
        distribute()
    if captured:
        learning_rates_on_device(method.optimizers, device)
    compile_graphs = device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")
    strict = cuda_graphs == "on" if strict is None else strict
    return step_function(method, query_rng, captured, strict, compile_graphs)
