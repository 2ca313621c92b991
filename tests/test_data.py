"""Data: image modes, the unpaired set's determinism, and the demo's synthetic domains."""

import numpy as np
import pytest
import torch
from PIL import Image

from sesim.data.images import image_size, list_images, load_rgb
from sesim.data.synthetic import render_flat, render_layout, render_textured, write_domains
from sesim.data.unpaired import UnpairedImages
from sesim.errors import DataError
from sesim.evaluation.layout import layout_iou


def test_synthetic_generator_is_deterministic(tmp_path):
    assert np.array_equal(render_layout(7), render_layout(7))
    assert not np.array_equal(render_layout(7), render_layout(8))
    assert np.array_equal(render_textured(render_layout(7), 7), render_textured(render_layout(7), 7))
    write_domains(tmp_path / "a", train=3, test=2, size=32, seed=5)
    write_domains(tmp_path / "b", train=3, test=2, size=32, seed=5)
    for name in ("trainA/0002.png", "trainB/0001.png", "testB/0001.png", "testL/0000.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_each_synthetic_class_has_its_own_shapes():
    """What lets an unpaired translator tell the classes apart without colour cues: rivers (3) run
    across the image, houses (1) are small, fields (2) are larger than houses."""
    layouts = [render_layout(seed) for seed in range(40)]
    rivers = [lab for lab in layouts if (lab == 3).any()]
    assert 20 <= len(rivers) < 40  # most layouts have one
    assert all(((lab == 3).any(axis=0)).mean() > 0.6 for lab in rivers)  # across the width (fields may cover it)
    houses = np.mean([(lab == 1).sum() for lab in layouts])
    fields = np.mean([(lab == 2).sum() for lab in layouts])
    assert 0 < houses < fields


def test_layout_metric_separates_kept_from_lost_layouts():
    labels = render_layout(3)
    kept = layout_iou(render_textured(labels, 3), labels)
    flat = layout_iou(np.full((64, 64, 3), 128, np.uint8), labels)
    other = layout_iou(render_flat(render_layout(11)), labels)
    assert kept > 0.6 and flat < 0.35 and other < 0.45


def test_unpaired_items_are_a_function_of_seed_and_index(tmp_path):
    root = write_domains(tmp_path, train=5, test=1, size=40, seed=0)
    make = lambda seed: UnpairedImages(root / "trainA", root / "trainB", seed, "resize_and_crop", 36, 32)  # noqa: E731
    first, again, other = make(0), make(0), make(1)
    assert torch.equal(first[7]["a"], again[7]["a"]) and first[7]["path_b"] == again[7]["path_b"]
    assert first[7]["a"].shape == (3, 32, 32) and first[7]["a"].min() >= -1 and first[7]["a"].max() <= 1
    orders = [[first.paths(e * 5 + i)[0].name for i in range(5)] for e in range(3)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders) and len({tuple(o) for o in orders}) > 1
    assert any(not torch.equal(first[i]["a"], other[i]["a"]) for i in range(5))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "LA"])
def test_image_modes_become_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / "x.png"
    image.save(path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB" and loaded.size == (7, 9)


def test_bad_files_and_folders(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"notes\.txt is a file; give the folder"):
        list_images(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path)
    (tmp_path / "fake.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*fake\.jpg"):
        load_rgb(tmp_path / "fake.jpg")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8) + 100).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png"):
        load_rgb(tmp_path / "cut.png")


def test_exif_orientation_is_applied(tmp_path):
    """A phone stores a portrait photo's pixels sideways and says so in EXIF: read it upright."""
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, 10, 20))  # blue on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    image.save(tmp_path / "plain.jpg", quality=95)
    upright = load_rgb(tmp_path / "phone.jpg")
    assert upright.size == (20, 40) and load_rgb(tmp_path / "plain.jpg").size == (40, 20)
    assert np.asarray(upright)[2, 10, 2] > 150  # the stored left edge is now on top
    # The header alone (what a dry run and a start read of every file) gives the size as shown.
    assert image_size(tmp_path / "phone.jpg") == (20, 40) and image_size(tmp_path / "plain.jpg") == (40, 20)


def test_a_header_read_decodes_nothing(tmp_path):
    """A PNG cut in its pixels passes the header read and fails the decode (``--dry-run=full``)."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 48, 3), np.uint8)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert image_size(tmp_path / "cut.png") == (48, 64)
    with pytest.raises(DataError, match=r"cut\.png"):
        load_rgb(tmp_path / "cut.png")


def test_a_folder_lists_every_format_a_single_file_reads(tmp_path):
    for name, fmt in (("a.tif", "TIFF"), ("b.tiff", "TIFF"), ("c.gif", "GIF"), ("d.png", "PNG")):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name, format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.tiff", "c.gif", "d.png"]
    assert load_rgb(tmp_path / "c.gif").size == (8, 8)


def test_images_far_larger_than_the_load_size_are_named_before_training(tmp_path, capsys):
    """A 300 px photo among 40 px tiles at data.load_size=36 is decoded in full to be shrunk every
    time it is drawn: the dry run and the real start say so (and name it); crop mode, which keeps
    the full size, does not."""
    from sesim.cli import main
    from sesim.data.unpaired import check_survey
    from tests.helpers import TINY, tiny_data

    data = tiny_data(tmp_path / "data")
    big = data / "trainA" / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 280, 3), dtype=np.uint8)).save(big)

    def survey(preprocess):
        return check_survey(UnpairedImages(data / "trainA", data / "trainB", 0, preprocess, 36, 32))

    assert any(f"1 image(s) over 4x data.load_size=36 on their short side (largest {big}, 280x300)" in line
               for line in survey("resize_and_crop"))  # fmt: skip
    assert not any("data.load_size" in line for line in survey("crop"))
    big.unlink()
    assert not any("data.load_size" in line for line in survey("resize_and_crop"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 280, 3), dtype=np.uint8)).save(big)
    sets = [arg for s in [*TINY, f"log.out_dir={tmp_path / 'runs'}", "train.max_steps=1"] for arg in ("--set", s)]
    assert main(["train", "fsesim", "--data", str(data), *sets]) == 0
    assert "note: 1 image(s) over 4x data.load_size=36" in capsys.readouterr().out
