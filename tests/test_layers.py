"""The package's floors run one way (docs/architecture.md): inference, evaluation and analysis use
a trained generator without the training engine, and inference without any training method."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "sesim"


def _loaded_after_import(*modules: str) -> list[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sesim'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "package",
    ["sesim.inference", "sesim.inference.export", "sesim.evaluation.evaluate", "sesim.evaluation.segscore",
     "sesim.analysis.alignment", "sesim.analysis.similarity_maps"],
)  # fmt: skip
def test_using_a_generator_loads_no_training_module(package):
    loaded = _loaded_after_import(package)
    assert package in loaded  # the import happened
    assert not [m for m in loaded if m == "sesim.training" or m.startswith("sesim.training.")], loaded


def test_inference_loads_no_training_method():
    loaded = _loaded_after_import("sesim.inference", "sesim.inference.export")
    assert not [m for m in loaded if m.startswith("sesim.methods")], loaded


def test_the_check_sees_a_training_import():
    """The check above can fail: importing the engine does load it."""
    assert "sesim.training.loop" in _loaded_after_import("sesim.training.loop")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("sesim")}


# What each floor may import (besides itself and the light top-level modules).
GROUND = {"sesim.losses", "sesim.backbones", "sesim.networks", "sesim.data"}
LIGHT = {
    "sesim", "sesim.errors", "sesim.files", "sesim.presets", "sesim.config", "sesim.checkpoint", "sesim.runtime",
    "sesim.torch_files",
}  # fmt: skip
ALLOWED = {
    "losses": GROUND,
    "backbones": GROUND,
    "networks": GROUND,
    "data": GROUND,
    "methods": GROUND | {"sesim.methods"},
    "inference": GROUND | {"sesim.inference"},
    "evaluation": GROUND | {"sesim.evaluation"},
    "analysis": GROUND | {"sesim.analysis", "sesim.inference", "sesim.methods"},
    "training": GROUND | {"sesim.methods", "sesim.training", "sesim.inference", "sesim.evaluation"},
}


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_each_floor_imports_only_what_is_below_it(floor):
    allowed = ALLOWED[floor] | LIGHT
    wrong = {}
    for path in (SRC / floor).rglob("*.py"):
        for name in _imports(path):
            if not any(name == ok or name.startswith(ok + ".") for ok in allowed if ok != "sesim") and name != "sesim":
                wrong.setdefault(str(path.relative_to(SRC)), []).append(name)
    assert not wrong, wrong


def test_few_loose_modules_at_the_top():
    loose = sorted(p.name for p in SRC.glob("*.py"))
    assert loose == [
        "__init__.py", "checkpoint.py", "cli.py", "config.py", "demo.py", "errors.py", "files.py", "presets.py",
        "runtime.py", "torch_files.py",
    ]  # fmt: skip
