"""``sesim analyze`` (aligned vs unaligned pairs) and ``sesim visualize`` (similarity maps)."""

import json

import numpy as np
import pytest
from PIL import Image

from sesim.analysis.alignment import analyze, auc, paired_files, patch_nce
from sesim.cli import main
from sesim.data.synthetic import write_domains
from sesim.errors import DataError
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """Flat label layouts (A) and their textured renderings (B), same file names."""
    root = write_domains(tmp_path_factory.mktemp("paired"), train=1, test=8, size=64, seed=4)
    return root / "testA", root / "testB"


def test_auc_counts_aligned_below_unaligned():
    assert auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auc([0.1, 0.4], [0.2, 0.3]) == 0.5


def test_patch_nce_is_low_for_the_same_features():
    import torch

    features = torch.randn(1, 16, 8, 8)
    ids = torch.arange(64)
    assert patch_nce(features, features, ids) < patch_nce(features, features.roll(3, dims=3), ids)


def test_fsesim_tells_aligned_from_unaligned_pairs(paired):
    summary = analyze(*paired, size=64, max_pairs=8, unaligned_per_image=3, num_queries=64, window=5)
    losses = summary["losses"]
    assert summary["pairs"] == 8 and summary["unaligned_pairs"] == 24
    fsesim = losses["FSeSim global cos"]
    assert fsesim["auc"] > 0.9 and fsesim["aligned_mean"] < fsesim["unaligned_mean"]
    assert len(fsesim["aligned"]) == 8 and len(fsesim["unaligned"]) == 24
    # Across a change of appearance pixels say little: FSeSim separates better.
    assert fsesim["auc"] > losses["pixel L1"]["auc"]


def test_analyze_cli_writes_table_plot_and_lsesim_row(paired, tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("lsesim", data, tmp_path / "runs", "train.max_steps=1"))
    out = tmp_path / "analysis"
    args = ["analyze", "--a", str(paired[0]), "--b", str(paired[1]), "--size", "32", "--max-pairs", "4",
            "--unaligned", "2", "--backbone", "vgg16", "--weights", "random", "--taps", "relu1_2,relu2_1",
            "--heads-from", str(run_dir), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "analysis.json").read_text())
    assert "LSeSim global cos (trained heads)" in summary["losses"]
    assert "| FSeSim global cos |" in (out / "analysis.md").read_text()
    with Image.open(out / "analysis.png") as picture:
        assert picture.size[0] > 500
    assert main(args) == 2 and "analysis.json already exists (and 2 more)" in capsys.readouterr().err
    other_taps = [*args[: args.index("--taps") + 1], "relu1_2", *args[args.index("--taps") + 2 :], "--overwrite"]
    assert main(other_taps) == 2  # the heads' own taps, not silently swapped for the ones asked
    assert "sit on taps relu1_2,relu2_1" in capsys.readouterr().err


def test_analyze_bad_input(paired, tmp_path, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(lonely / "other.png")
    with pytest.raises(DataError, match="share 0 file names"):
        paired_files(paired[0], lonely)
    assert main(["analyze", "--a", str(paired[0]), "--b", str(tmp_path / "missing")]) == 2
    assert "folder not found" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{}")
    assert main(["analyze", "--a", str(paired[0]), "--b", str(paired[1]), "--out", str(tmp_path / "report.json")]) == 2
    assert "is a file; analyze writes a folder" in capsys.readouterr().err


def test_visualize_writes_the_expected_grid(tmp_path, paired, capsys):
    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=1"))
    image = sorted(paired[0].iterdir())[0]
    out = tmp_path / "maps.png"
    assert main(["visualize", str(run_dir), str(image), "--out", str(out), "--size", "64",
                 "--point", "10,20", "--point", "40,40"]) == 0  # fmt: skip
    with Image.open(out) as picture:
        # two taps x two points rows; source | translation | colour scale columns, 64 px tiles
        assert picture.size == (2 * 64 + 70, 4 * 64)
        pixels = np.asarray(picture)
    assert pixels[:, :128].std() > 0
    bar = pixels[12:40, 128 + 4 : 128 + 18]
    assert bar.std() > 10 and not (bar == 255).all()  # the colour bar is drawn
    ring = pixels[20 - 8 : 20 + 8, 10 - 8 : 10 + 8]
    assert ((ring[..., 1] > 200) & (ring[..., 0] < 60) & (ring[..., 2] < 60)).any()  # the query point is marked


def test_visualize_keeps_the_aspect_and_takes_points_in_image_pixels(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=1"))
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)).save(wide)
    out = tmp_path / "wide_maps.png"
    assert main(["visualize", str(run_dir), str(wide), "--out", str(out), "--size", "64", "--point", "90,40"]) == 0
    with Image.open(out) as picture:
        assert picture.size == (2 * 64 + 70, 2 * 32)  # 96x48 drawn at 64x32, not squashed to 64x64
    assert main(["visualize", str(run_dir), str(wide), "--out", str(tmp_path / "x.png"), "--point", "99,1"]) == 2
    assert "outside the 96x48 image" in capsys.readouterr().err
    kept = out.read_bytes()  # an existing picture, the input image itself, a file that is no picture
    for target, extra, message in [(out, [], "already exists"), (wide, ["--overwrite"], "is the input image"),
                                   (tmp_path / "maps", [], "use an image file name")]:  # fmt: skip
        assert main(["visualize", str(run_dir), str(wide), "--out", str(target), "--point", "9,9", *extra]) == 2
        assert message in capsys.readouterr().err
    assert out.read_bytes() == kept and not (tmp_path / "maps").exists()
    assert main(["visualize", str(run_dir), str(wide), "--out", str(out), "--point", "9,9", "--overwrite"]) == 0
    assert out.read_bytes() != kept
    for extra in (["--num-points", "5"], ["--seed", "2"]):  # they draw random points: with --point, nothing
        assert (
            main(["visualize", str(run_dir), str(wide), "--out", str(tmp_path / "x.png"), "--point", "9,9", *extra])
            == 2
        )
        assert "with --point they do nothing" in capsys.readouterr().err
    assert main(["visualize", str(run_dir), str(wide), "--out", str(tmp_path / "x.png"), "--num-points", "0"]) == 2
    assert "--num-points must be at least 1" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_analyze_refuses_what_leaves_its_auc_undefined(paired, tmp_path, capsys):
    base = ["analyze", "--a", str(paired[0]), "--b", str(paired[1]), "--out", str(tmp_path / "out")]
    assert main([*base, "--max-pairs", "1"]) == 2
    assert "an AUC needs unaligned pairs" in capsys.readouterr().err
    assert main([*base, "--unaligned", "0"]) == 2
    assert "--unaligned 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--size", "0"], "--size 0: images are resized"),
        (["--size", "24", "--taps", "stage5"], "--size 24: tap stage5 is 1x1"),
        (["--size", "100000"], "--size 100000 with 2 pairs needs ~"),
        (["--window", "1"], "--window 1: a local window needs at least 2x2"),
    ],
)
def test_analyze_refuses_sizes_and_windows_it_cannot_run(paired, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out"
    assert (
        main(["analyze", "--a", str(paired[0]), "--b", str(paired[1]), "--max-pairs", "2", "--out", str(out), *extra])
        == 2
    )
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert not out.exists()
