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


@pytest.mark.parametrize(
    "packages",
    [("sesim.inference", "sesim.inference.export"), ("sesim.evaluation.evaluate", "sesim.evaluation.layout",
     "sesim.evaluation.segscore")],
)  # fmt: skip
def test_inference_and_evaluation_load_no_training_method(packages):
    loaded = _loaded_after_import(*packages)
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
    "sesim.torch_files", "sesim.outputs",
}  # fmt: skip
ALLOWED = {
    "losses": GROUND,
    "backbones": GROUND,
    "networks": GROUND,
    "data": GROUND,
    "methods": GROUND | {"sesim.methods"},
    "inference": GROUND | {"sesim.inference"},
    "evaluation": GROUND | {"sesim.evaluation"},
    "analysis": GROUND | {"sesim.analysis", "sesim.inference"},
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
        "__init__.py", "checkpoint.py", "cli.py", "config.py", "demo.py", "errors.py", "files.py", "outputs.py",
        "presets.py", "runtime.py", "torch_files.py",
    ]  # fmt: skip


def test_the_config_schema_loads_no_component():
    """Validating a config needs the schema alone: no method, network, backbone or metric."""
    loaded = _loaded_after_import("sesim.config")
    assert set(loaded) == {"sesim", "sesim.config", "sesim.errors"}, loaded
    from sesim.config import load_config

    load_config("lsesim", ["method=cyclegan", "loss.backbone=efficientnet_lite0"])  # validates without them
    code = (
        "import sys\nfrom sesim.config import load_config\nload_config('cut')\n"
        "print(sorted(m for m in sys.modules if m.startswith('sesim')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sesim.methods" not in result.stdout and "sesim.networks" not in result.stdout, result.stdout


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the sesim modules it imports}``, from every import statement in ``src/`` (lazy
    ones inside functions too: a circle through them is still a circle)."""
    modules = {_module(path): path for path in SRC.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    graph = {}
    for module, path in modules.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sesim"):
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names if alias.name.startswith("sesim"))
        graph[module] = {found for name in names if (found := resolve(name)) and found != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected parts of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            part = []
            while (other := stack.pop()) != module:
                part.append(other)
            if part:
                found.append(sorted([module, *part]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_in_src():
    assert circles(import_graph()) == []


def test_the_circle_check_can_fail():
    """The schema importing a method (as config.registry once did, lazily) closes a circle."""
    graph = import_graph()
    assert "sesim.config" in graph["sesim.methods.base"]
    graph["sesim.config"] = graph["sesim.config"] | {"sesim.methods"}
    (circle,) = circles(graph)
    assert "sesim.config" in circle and "sesim.methods" in circle


def test_the_loss_loads_no_generator_or_discriminator():
    loaded = _loaded_after_import("sesim.losses")
    assert not [m for m in loaded if m.startswith("sesim.networks") or m.startswith("sesim.methods")], loaded
    assert "sesim.config" not in loaded  # a library user's import does not pay for the config schema


def test_the_analysis_loads_no_training_method():
    loaded = _loaded_after_import("sesim.analysis.alignment", "sesim.analysis.similarity_maps")
    assert not [m for m in loaded if m.startswith("sesim.methods")], loaded


def test_error_classes_are_imported_from_sesim_errors_only():
    """One path per error class: ``from sesim.errors import X``, never a module that re-exports it."""
    import sesim.errors

    classes = {name for name, value in vars(sesim.errors).items() if isinstance(value, type)}
    elsewhere = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sesim"):
                if node.module != "sesim.errors":
                    elsewhere += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name in classes]
    assert classes >= {"ConfigError", "DataError", "OutOfMemory", "Interrupted"}
    assert not elsewhere, elsewhere


ALLOWED_LONG = {("cli.py", "build_parser"), ("loop.py", "run_training")}  # a declarative table; one outline


def test_no_function_over_80_lines_but_the_parser_table_and_the_training_loop():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80 and (path.name, node.name) not in ALLOWED_LONG:
                    long.append(f"{path.relative_to(SRC)}: {node.name} ({lines} lines)")
    assert not long, long


def test_a_package_loads_its_networks_when_they_are_built_not_all_at_import():
    """``import sesim.networks`` loads no network; building the paper's generator loads its own
    module, not the multi-modal or StyleGAN2 ones; the classes stay importable from the package."""
    code = (
        "import json, sys\nimport sesim.networks as n\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('sesim'))\n"
        "from sesim.config import load_config\nn.build_generator(load_config('fsesim').model.generator)\n"
        "built = sorted(m for m in sys.modules if m.startswith('sesim.networks'))\n"
        "print(json.dumps([loaded, built, n.MultimodalGenerator.__module__]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, built, home = json.loads(result.stdout)
    assert loaded == ["sesim", "sesim.networks"], loaded
    assert "sesim.networks.generators" in built
    assert not {"sesim.networks.munit", "sesim.networks.stylegan2"} & set(built), built
    assert home == "sesim.networks.munit"
