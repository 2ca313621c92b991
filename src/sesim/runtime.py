"""Where and how a command runs: the device (``pick_device``), the precision (``resolve_precision``,
``weight_dtype``), the memory there is, the peak a process reached,
a cap that turns running out of memory into an error a command can answer, and how to tell an
out-of-memory failure from any other."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from sesim.errors import ConfigError, DeviceError

try:
    import resource
except ImportError:  # Windows: no rlimits; the peak is read another way and nothing is capped
    resource = None

# Torch's CPU allocator, CUDA's caching allocator and Python itself, when memory runs out.
_OUT_OF_MEMORY_TEXTS = ("can't allocate memory", "out of memory", "cannot allocate memory")


def _proc_kib(path: str, field: str) -> int | None:
    """A ``kB`` field of a Linux ``/proc`` file (``MemAvailable:`` of ``/proc/meminfo``), in bytes."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_ram() -> int | None:
    """Bytes of RAM available to a new allocation (``MemAvailable``), or ``None`` when unknown."""
    found = _proc_kib("/proc/meminfo", "MemAvailable:")
    if found is not None:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def pick_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` picks CUDA when available; an unknown or unavailable device is a clear error that
    names ``option`` (the flag or config key the name came from)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{option} {name}: unknown device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{option} {name}: no CUDA device is available here; use auto or cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 autocast on CUDA cards that support it, full precision elsewhere (CPUs
    without bf16 matrix units run bf16 slower than fp32). Returns the autocast dtype or ``None``."""
    if precision == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use else None
    return torch.bfloat16 if precision == "bf16" else None


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of weights, optimizer states and input batches: float64 for ``fp64`` reference
    runs, float32 otherwise (bf16 is autocast over float32 weights)."""
    return torch.float64 if precision == "fp64" else torch.float32


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation (CPU or CUDA), not some other failure."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _OUT_OF_MEMORY_TEXTS)


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation may take on ``device``: CUDA's free memory, or the system's
    available memory (within this process's cap, when one is set)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = available_ram()
    room = _room_under_cap()
    return room if free is None else free if room is None else min(free, room)


def peak_memory(device: torch.device) -> dict[str, int]:
    """The peak this process reached: on CUDA the allocator's peak (``allocated``, what tensors
    held, and ``reserved``, what the allocator took from the card) since the last reset; on the
    CPU the process's peak resident memory (``resident``) since it started."""
    if device.type == "cuda":
        allocated, reserved = torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
        return {"allocated": allocated, "reserved": reserved}
    return {"resident": resident_bytes() if resource is None else _max_resident()}


def _data_bytes() -> int | None:
    """The process's data segment now (``VmData``: what ``RLIMIT_DATA`` counts)."""
    return _proc_kib("/proc/self/status", "VmData:")


def _max_resident() -> int:
    """The process's peak resident set since it started (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _room_under_cap() -> int | None:
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    used = _data_bytes()
    if soft == resource.RLIM_INFINITY or used is None:
        return None
    return max(0, soft - used)


def parse_bytes(text: str, option: str) -> int:
    """``8G``, ``512M``, ``1.5T`` or a plain number of bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in units else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise ConfigError(f"{option}={text}: give a size such as 8G, 512M or a number of bytes") from None
    if number <= 0:
        raise ConfigError(f"{option}={text}: give a size above 0")
    return int(number * units[unit])


@contextmanager
def memory_cap(device: torch.device) -> Iterator[None]:
    """On the CPU, cap the process's data (``RLIMIT_DATA``) at what it holds now plus the memory
    the system has available (or ``SESIM_MAX_MEMORY``, when set, as the whole process's limit), so
    an allocation beyond it fails with an error the command answers in one line, where the
    kernel's out-of-memory killer would end the process without a word. CUDA needs no cap: its
    allocator raises by itself. Loader workers inherit the cap (each its own)."""
    used, free = _data_bytes(), available_ram()
    wanted = os.environ.get("SESIM_MAX_MEMORY")
    if device.type != "cpu" or used is None or resource is None or not (wanted or free):
        yield
        return
    limit = parse_bytes(wanted, "SESIM_MAX_MEMORY") if wanted else used + free
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)  # a cap set by the user's shell stays the tighter one
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def saved_bytes(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes of activations a forward pass of ``module`` keeps for its backward pass (the storages
    of the tensors autograd saves, each once, its own weights and buffers aside; with activation
    checkpointing, only those between its segments), measured by running it."""
    total = 0
    # Weights are saved too (a convolution keeps its weight): they are there anyway, not activations.
    seen = {tensor.untyped_storage().data_ptr() for tensor in [*module.parameters(), *module.buffers()]}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:  # one tensor saved by two ops (a conv's input, a ReLU's output) is kept once
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(*inputs)
    return total


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def _heap_reader() -> Callable[[], int]:
    """Bytes this process's ``malloc`` has handed out and not taken back (glibc's ``mallinfo2``:
    in use, whatever the allocator keeps for reuse), or, without glibc, the resident set."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
        mallinfo2.restype = _MallInfo2

        def in_use() -> int:
            info = mallinfo2()
            return info.uordblks + info.hblkhd

        in_use()
        return in_use
    except (OSError, AttributeError):
        return resident_bytes


def resident_bytes() -> int:
    """The process's resident set now."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0 if resource is None else _max_resident()  # the peak: the best there is


class HeapPeak:
    """The most memory the CPU allocator had handed out while the block ran, sampled every
    millisecond by a thread (torch's kernels release the interpreter, so it samples during
    them): the memory a step needs, apart from what the allocator keeps for reuse."""

    def __enter__(self) -> HeapPeak:
        self._read = _heap_reader()
        self.before = self.bytes = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, self._read())
            self._stop.wait(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, self._read())
