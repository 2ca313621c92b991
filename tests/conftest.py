from pathlib import Path

import pytest
import torch

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
def _no_network(monkeypatch):
    """No test may download: fail loudly if anything asks torch hub for a URL."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
