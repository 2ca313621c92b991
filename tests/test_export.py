"""``sesim export``: ONNX checked with onnxruntime and TorchScript, on real and synthetic images."""

import pytest
import torch

import sesim.inference.export as export_module
from sesim.cli import main
from sesim.data.images import load_rgb, to_tensor
from sesim.errors import ExportError
from sesim.inference import load_generator
from sesim.inference.export import export_generator, read_metadata, run_exported
from sesim.inference.translate import pad_to_multiple, translate_tensor
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return train(tiny_config("fsesim", tiny_data(root / "data"), root / "runs", "train.max_steps=2"))


@pytest.mark.parametrize("name", ["generator.onnx", "generator.pt"])
def test_export_matches_pytorch_on_a_real_image(run_dir, tmp_path, maps_dir, name):
    image = sorted((maps_dir / "trainA").iterdir())[0]
    gap = export_generator(run_dir, tmp_path / name, image)
    assert gap < 1e-4
    # Any batch and size (multiples of 4), not only the traced example's.
    generator, _ = load_generator(run_dir)
    images = torch.rand(3, 3, 44, 72) * 2 - 1
    with torch.no_grad():
        expected = generator(images)
    assert torch.allclose(run_exported(tmp_path / name, images), expected, atol=1e-4)
    # The check compares something: a perturbed input changes the output.
    real, _ = pad_to_multiple(to_tensor(load_rgb(image))[None])
    assert not torch.allclose(run_exported(tmp_path / name, real), run_exported(tmp_path / name, real.flip(3)))


def test_export_cli(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), str(tmp_path / "g.onnx")]) == 0
    assert "largest difference" in capsys.readouterr().out and (tmp_path / "g.onnx").is_file()
    assert main(["export", str(run_dir), str(tmp_path / "g.bin")]) == 2
    assert "use a .onnx" in capsys.readouterr().err
    with pytest.raises(ExportError):
        export_generator(run_dir, tmp_path / "g.txt")


def test_export_never_replaces_its_checkpoint_and_replaces_a_file_only_when_asked(run_dir, tmp_path, capsys):
    latest = run_dir / "checkpoints" / "latest.pt"
    newest = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]  # latest.pt's hard-linked twin
    before = {path: path.read_bytes() for path in (latest, newest)}
    for target in (latest, newest):
        assert main(["export", str(run_dir), str(target), "--overwrite"]) == 2
        assert "is the checkpoint being exported" in capsys.readouterr().err
    assert all(path.read_bytes() == data for path, data in before.items())
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"the user's own file")
    assert main(["export", str(run_dir), str(mine)]) == 2
    assert "already exists" in capsys.readouterr().err and mine.read_bytes() == b"the user's own file"
    assert main(["export", str(run_dir), str(mine), "--overwrite"]) == 0
    assert read_metadata(mine)["trained_steps"] == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt"]


@pytest.mark.parametrize("name", ["generator.onnx", "generator.pt"])
def test_export_takes_any_size_like_translate_and_carries_metadata(run_dir, tmp_path, name):
    """Odd sizes go through the same reflection padding as sesim translate (no multiple of 4 needed)."""
    assert export_generator(run_dir, tmp_path / name) < 1e-4  # the default check pattern is 253x190
    generator, _ = load_generator(run_dir)
    for shape in [(1, 3, 45, 71), (2, 3, 9, 13), (1, 3, 64, 64)]:
        images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        exported = run_exported(tmp_path / name, images)
        assert exported.shape == images.shape
        assert torch.allclose(exported, translate_tensor(generator, images), atol=1e-4)
    info = read_metadata(tmp_path / name)
    assert info["value_range"] == "[-1, 1]" and info["channel_order"] == "RGB" and info["layout"] == "NCHW"
    assert info["method"] == "one_sided" and info["preset"] == "fsesim" and info["trained_steps"] == "2"
    assert info["sesim_version"]


def test_an_export_over_the_tolerance_replaces_nothing(run_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "g.pt"
    assert main(["export", str(run_dir), str(target)]) == 0
    before = target.read_bytes()
    capsys.readouterr()
    exact = export_module.run_exported  # a runtime that drifts by 0.01 stands for a broken export
    monkeypatch.setattr(export_module, "run_exported", lambda path, images, style: exact(path, images, style) + 0.01)
    assert main(["export", str(run_dir), str(target), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "differs from PyTorch by 1.00e-02 (> 0.001)" in err and f"{target} is unchanged" in err
    assert err.count("\n") == 1 and target.read_bytes() == before and sorted(tmp_path.iterdir()) == [target]
    assert main(["export", str(run_dir), str(tmp_path / "new.onnx")]) == 1
    assert "nothing written (a --tolerance above it" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == [target]
    assert main(["export", str(run_dir), str(tmp_path / "new.onnx"), "--tolerance", "-1"]) == 2
    assert "--tolerance must be at least 0" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(tmp_path / "new.pt"), "--tolerance", "0.02"]) == 0


def test_ctrl_c_during_an_export_writes_nothing_and_says_so(run_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "g.onnx"
    target.write_bytes(b"an earlier export")

    def interrupted(path, images, style=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "run_exported", interrupted)
    assert main(["export", str(run_dir), str(target), "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert err == f"sesim: interrupted; nothing written; {target} is unchanged\n"
    assert target.read_bytes() == b"an earlier export" and sorted(tmp_path.iterdir()) == [target]
