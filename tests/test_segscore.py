"""Cityscapes label -> photo score: label-id mapping, confusion-matrix scores with known answers,
the DRN-D-22 layout, and the folder scoring with a tiny stand-in segmenter."""

import numpy as np
import pytest
import torch
from PIL import Image

from sesim.cli import main
from sesim.errors import WeightsUnavailableError
from sesim.evaluation.drn import DRNSegmenter
from sesim.evaluation.segmentation import IGNORE, confusion, match_key, scores, train_ids
from sesim.evaluation.segscore import cityscapes_score, load_segmenter

# label id -> colour of the stand-in "photos": road, car, sky, and unlabeled (ignored).
PALETTE = {7: (128, 64, 128), 26: (0, 0, 142), 23: (70, 130, 180), 0: (0, 0, 0)}


class ColourSegmenter(torch.nn.Module):
    """Stand-in for DRN: the train id of the nearest palette colour (road 0, sky 10, car 13)."""

    def __init__(self):
        super().__init__()
        colours = torch.tensor([PALETTE[7], PALETTE[23], PALETTE[26]], dtype=torch.float32) / 127.5 - 1
        self.register_buffer("colours", colours)
        self.ids = [0, 10, 13]

    def forward(self, images):
        distance = ((images[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        logits = torch.full((images.shape[0], 19, *images.shape[2:]), -1e9)
        for index, train_id in enumerate(self.ids):
            logits[:, train_id] = -distance[:, index]
        return logits


def write_scene(folder_photos, folder_labels, name, layout, swap=False):
    """``layout``: (H, W) label ids; the photo paints each id with its palette colour."""
    folder_photos.mkdir(parents=True, exist_ok=True)
    folder_labels.mkdir(parents=True, exist_ok=True)
    photo = np.zeros((*layout.shape, 3), np.uint8)
    for label in PALETTE:
        painted = {7: 26, 26: 7}.get(label, label) if swap else label
        photo[layout == label] = PALETTE[painted]
    Image.fromarray(photo).save(folder_photos / f"{name}_leftImg8bit.png")
    Image.fromarray(layout.astype(np.uint8), mode="L").save(folder_labels / f"{name}_gtFine_labelIds.png")


def layout(seed):
    rng = np.random.default_rng(seed)
    ids = np.full((128, 256), 23, np.uint8)  # sky
    ids[64:] = 7  # road
    top = rng.integers(60, 90)
    ids[top : top + 30, 40:120] = 26  # a car
    ids[120:, :16] = 0  # unlabeled corner
    return ids


def test_label_ids_map_to_train_ids():
    assert train_ids(np.array([7, 26, 23, 0, 1, 33, 34])).tolist() == [0, 13, 10, IGNORE, IGNORE, 18, IGNORE]
    assert match_key("aachen_000001_000019_gtFine_labelIds") == match_key("aachen_000001_000019_leftImg8bit")


def test_scores_known_answer():
    truth = np.array([0, 0, 1, 1, IGNORE])
    prediction = np.array([0, 1, 1, 1, 0])
    result = scores(confusion(prediction, truth, classes=19))
    # class 0: IoU 1/2, acc 1/2; class 1: IoU 2/3, acc 1; pixels 3/4 (the ignored one skipped)
    assert result["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["class_accuracy"] == pytest.approx(0.75)
    assert result["pixel_accuracy"] == pytest.approx(0.75)
    assert result["classes_present"] == 2


def test_drn_d22_layout_matches_the_public_checkpoint_names():
    network = DRNSegmenter().eval()
    keys = set(network.state_dict())
    expected = {"base.0.0.weight", "base.3.0.downsample.0.weight", "base.8.1.running_var", "seg.weight", "up.weight"}
    assert expected <= keys
    assert not any(key.startswith("base.9") for key in keys)
    with torch.no_grad():
        assert network(torch.zeros(2, 3, 128, 256)).shape == (2, 19, 128, 256)


def test_translated_and_real_scores(tmp_path):
    for i in range(3):
        write_scene(tmp_path / "real", tmp_path / "labels", f"city_{i:06d}", layout(i))
        write_scene(tmp_path / "fake", tmp_path / "labels", f"city_{i:06d}", layout(i), swap=i == 0)
    result = cityscapes_score(tmp_path / "fake", tmp_path / "labels", ColourSegmenter(), real=tmp_path / "real")
    assert result["real"]["mean_iou"] == pytest.approx(1.0) and result["real"]["pixel_accuracy"] == pytest.approx(1.0)
    assert result["translated"]["mean_iou"] < 0.9 and result["translated"]["images"] == 3


def test_segscore_cli_loads_a_weights_file_and_reports_bad_files(tmp_path, capsys):
    for i in range(2):
        write_scene(tmp_path / "photos", tmp_path / "labels", f"s{i}", layout(i))
    weights = tmp_path / "drn.pth"
    torch.save({f"module.{k}": v for k, v in DRNSegmenter().state_dict().items()}, weights)  # DataParallel names
    assert isinstance(load_segmenter(weights), DRNSegmenter)
    photos, labels = str(tmp_path / "photos"), str(tmp_path / "labels")
    args = ["segscore", "--photos", photos, "--labels", labels, "--segmenter-weights", str(weights),
            "--real", photos, "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args) == 0
    assert "real photos (upper bound)" in capsys.readouterr().out and (tmp_path / "s.json").is_file()
    report = (tmp_path / "s.json").read_bytes()
    assert main(args) == 2  # checked before the segmenter is loaded or anything scored
    assert "--out: " in (err := capsys.readouterr().err) and "s.json already exists (and 1 more)" in err
    assert (tmp_path / "s.json").read_bytes() == report
    args.append("--overwrite")

    torch.save({"seg.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsUnavailableError, match="not a DRN-D-22"):
        load_segmenter(tmp_path / "other.pth")
    args[6] = str(tmp_path / "missing.pth")
    assert main(args) == 2 and "weights file not found" in capsys.readouterr().err
    (tmp_path / "labels" / "s0_gtFine_labelIds.png").unlink()
    args[6] = str(weights)
    assert main(args) == 2 and "no labelIds file for s0" in capsys.readouterr().err
