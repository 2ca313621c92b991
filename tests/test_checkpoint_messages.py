"""A file that is not a usable checkpoint gets the real reason, in one line, with no library
warning on the way: an image, an ONNX or TorchScript export, random bytes, text, an empty file,
a truncated checkpoint, a pickle that would run code, another format version."""

import argparse
import hashlib
import os

import pytest
import torch
from PIL import Image

from sesim.checkpoint import FORMAT, save_checkpoint
from sesim.cli import main


def jpeg(path):
    Image.new("RGB", (8, 8)).save(path, format="JPEG")


def onnx_model(path):
    from onnx import TensorProto, helper, save

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [value("x", TensorProto.FLOAT, [1])], [value("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    save(helper.make_model(graph), path)


def torchscript(path):
    with pytest.warns(FutureWarning):  # torch.jit is deprecated in 2.14; sesim export still writes it
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 1)), path)


def truncated(path):
    save_checkpoint(path, {"config": {}, "weights": torch.zeros(5000)})
    path.write_bytes(path.read_bytes()[:700])


def code_running(path):
    torch.save({"format": FORMAT, "options": argparse.Namespace(lr=1)}, path)


def other_version(path):
    torch.save({"format": FORMAT, "format_version": 99}, path)


def protocol_4(path):
    torch.save({"format": FORMAT, "format_version": 2}, path, pickle_protocol=4)  # torch warns, then refuses


CASES = [
    (jpeg, "photo.pt", "is a JPEG image, not a SeSim checkpoint"),
    (onnx_model, "generator.onnx", "is an ONNX model"),
    (torchscript, "generator.pt", "is a TorchScript export"),
    (lambda p: p.write_bytes(b"\x01\x02" + os.urandom(3000)), "random.pt", "not a PyTorch file"),
    (lambda p: p.write_text("step: 100\n"), "notes.pt", "is a text file"),
    (lambda p: p.write_bytes(b""), "empty.pt", "is an empty file"),
    (truncated, "latest.pt", "truncated or damaged"),
    (code_running, "pickled.pt", "would run code when unpickled"),
    (other_version, "future.pt", "has checkpoint format 99"),
    (protocol_4, "protocol4.pt", "pickled with a protocol the safe loader cannot read"),
]


@pytest.mark.parametrize("make,name,fragment", CASES, ids=[c[1] for c in CASES])
def test_checkpoint_problems_name_their_cause(tmp_path, capsys, recwarn, make, name, fragment):
    path = tmp_path / name
    make(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    recwarn.clear()
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["translate", str(path), str(image), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert not (tmp_path / "out.png").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the file given is left as it was
