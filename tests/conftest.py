import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

# Kernel choices a run can be pinned to (CI re-runs the numerics tests under AVX2 with them).
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _inductor_cache_per_kernel_setting() -> None:
    """torch.compile's on-disk cache (torch 2.14) does not key its CPU code on
    ``ATEN_CPU_CAPABILITY``: code compiled under ``avx2`` and reloaded under AVX-512 gave NaN
    losses or a segfault here. One cache per kernel setting (kept between runs for speed)."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    setting = "|".join(f"{name}={os.environ.get(name, '')}" for name in KERNEL_SETTINGS) + torch.__version__
    key = hashlib.sha256(setting.encode()).hexdigest()[:12]
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"sesim-tests-inductor-{key}")


_inductor_cache_per_kernel_setting()
if os.environ.get("SESIM_TEST_DEVICE", "cpu").startswith("cuda"):
    # Deterministic cuBLAS needs its workspace fixed before the first CUDA call of the process.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def golden():
    return torch.load(DATA / "sesim_reference.pt", weights_only=True)


@pytest.fixture(scope="session")
def maps_dir():
    path = SHARED_DATA / "maps"
    if not (path / "trainA").is_dir():
        pytest.skip(f"real maps data not found at {path} (only present on the project's machines)")
    return path


@pytest.fixture(autouse=True)
def _same_draws_whatever_ran_before():
    """Each test starts from the same global RNG state: its random inputs must not depend on which
    tests ran (or were skipped: no maps data, no CUDA) before it, or on ``-k``."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test may download: fail loudly if anything asks torch hub for a URL."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
