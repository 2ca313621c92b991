"""Every bad input of the reliability list: one line naming the file or option, exit code 2."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sesim.cli import main
from sesim.data.images import load_rgb
from sesim.data.synthetic import write_domains
from sesim.data.transforms import augment
from sesim.training.loop import train
from tests.helpers import TINY, tiny_config

SETS = [arg for s in TINY for arg in ("--set", s)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = write_domains(root / "data", train=4, test=1, size=40, seed=2)
    run_dir = train(tiny_config("fsesim", data, root / "runs", "train.max_steps=1"))
    return root, data, run_dir


def _data_copy(base, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(base[1], data)
    return data


def missing_domain(base, tmp):
    data = _data_copy(base, tmp)
    shutil.rmtree(data / "trainB")
    return ["train", "fsesim", "--data", str(data), *SETS]


def empty_domain(base, tmp):
    data = _data_copy(base, tmp)
    for f in (data / "trainA").iterdir():
        f.unlink()
    return ["train", "fsesim", "--data", str(data), *SETS]


def no_images(base, tmp):
    data = _data_copy(base, tmp)
    for f in (data / "trainB").iterdir():
        f.rename(f.with_suffix(".txt"))
    return ["train", "fsesim", "--data", str(data), *SETS]


def truncated_image(base, tmp, workers=0):
    data = _data_copy(base, tmp)
    for f in (data / "trainA").iterdir():
        f.write_bytes(f.read_bytes()[:80])  # every A image is cut short
    return ["train", "fsesim", "--data", str(data), *SETS, "--set", f"data.workers={workers}"]


def truncated_image_in_worker(base, tmp):
    return truncated_image(base, tmp, workers=1)


def not_an_image(base, tmp):
    data = _data_copy(base, tmp)
    for f in (data / "trainB").iterdir():
        f.write_text("this is text with a .png name")
    return ["train", "fsesim", "--data", str(data), *SETS]


def unknown_key(base, tmp):
    return ["train", "fsesim", "--data", str(base[1]), "--set", "train.learning_rate=1"]


def wrong_type(base, tmp):
    return ["train", "fsesim", "--data", str(base[1]), "--set", "train.max_steps=lots"]


def _edited_checkpoint(base, tmp, edit):
    run = tmp / "run"
    shutil.copytree(base[2], run)
    document = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    edit(document)
    torch.save(document, run / "checkpoints" / "latest.pt")
    return run


def other_method_checkpoint(base, tmp):
    return ["train", "--resume", str(_edited_checkpoint(base, tmp, lambda d: d["config"].update(method="munit")))]


def older_format_checkpoint(base, tmp):
    return ["train", "--resume", str(_edited_checkpoint(base, tmp, lambda d: d.update(format_version=0)))]


def truncated_checkpoint(base, tmp):
    broken = tmp / "broken.pt"
    broken.write_bytes((base[2] / "checkpoints" / "latest.pt").read_bytes()[:1000])
    return ["translate", str(broken), str(base[1] / "testA"), str(tmp / "out")]


def unwritable_run_folder(base, tmp):
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    return ["train", "fsesim", "--data", str(base[1]), *SETS, "--set", f"log.out_dir={blocker / 'runs'}"]


def unwritable_translate_output(base, tmp):
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    return ["translate", str(base[2]), str(base[1] / "testA"), str(blocker / "out")]


def missing_cuda(base, tmp):
    return ["train", "fsesim", "--data", str(base[1]), *SETS, "--set", "train.device=cuda"]


CASES = [
    (missing_domain, "missing"),
    (empty_domain, "domain A: no images"),
    (no_images, "domain B: no images"),
    (truncated_image, "(--set data.on_bad_image=skip skips unreadable images)"),
    (truncated_image_in_worker, "(--set data.on_bad_image=skip skips unreadable images)"),
    (not_an_image, "cannot read image"),
    (unknown_key, "--set train.learning_rate=1: unknown key"),
    (wrong_type, "--set train.max_steps=lots: Input should be a valid integer"),
    (other_method_checkpoint, "(stored config): method: unknown 'munit'; choose from one_sided"),
    (older_format_checkpoint, "checkpoint format 0"),
    (truncated_checkpoint, "cannot load checkpoint"),
    (unwritable_run_folder, "log.out_dir: cannot write in"),
    (unwritable_translate_output, "output: cannot create"),
]
if not torch.cuda.is_available():
    CASES.append((missing_cuda, "no CUDA device"))


@pytest.mark.parametrize("make,fragment", CASES, ids=[case[0].__name__ for case in CASES])
def test_bad_input_one_line_exit_2(base, tmp_path, capsys, make, fragment):
    argv = make(base, tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    if make in (truncated_image, truncated_image_in_worker, not_an_image):
        assert ".png" in err  # the file is named


def test_skip_mode_counts_bad_images(base, tmp_path):
    data = _data_copy(base, tmp_path)
    bad = sorted((data / "trainA").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:80])
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=4", "data.on_bad_image=skip"))
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e.get("event") == "skipped_image"]
    assert [e["file"] for e in skipped] == [str(bad)] and skipped[0]["skipped_so_far"] == 1


def test_images_smaller_than_the_crop_are_upscaled(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(path)
    cropped = augment(load_rgb(path), torch.Generator().manual_seed(0), "crop", crop_size=32)
    assert cropped.size == (32, 32)
