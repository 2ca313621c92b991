"""The README's promises: its first commands are what CI runs, and its library snippet runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    first_block = re.search(r"```(?:bash|sh)\n(.*?)```", README, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and commands[1].strip() == "sesim demo"
    assert commands[0].strip() in (ROOT / ".ci" / "run").read_text()


def test_library_snippet_runs():
    snippet = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README snippet", "exec"), namespace)
    assert namespace["loss_g"].requires_grad and namespace["loss_g"].item() > 0


def test_result_tables_match_their_json():
    """README and RESULTS.md tables are generated from benchmarks/results/*.json, never typed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    for document in tables.DOCUMENTS:
        text = document.read_text()
        assert tables.render(text) == text, f"{document.name}: run python benchmarks/tables.py"
    # The check can fail: a hand-edited figure inside a block is rewritten.
    block = re.search(r"<!-- table:(\w+) -->\n(.*?)<!-- /table:\1 -->", README, re.S)
    tampered = README.replace(block.group(2), block.group(2) + "| 1 | 2 |\n", 1)
    assert tables.render(tampered) != tampered


def test_training_snippet_runs(tmp_path):
    """The Python block that trains, on the tiny data and settings, and its resume."""
    from sesim.training.loop import train
    from tests.helpers import TINY, tiny_data

    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "resolve_run(" in b]
    data = tiny_data(tmp_path / "data")
    settings = [*TINY, f"log.out_dir={tmp_path / 'runs'}", "train.max_steps=1"]
    snippet = snippet.replace('"datasets/horse2zebra"', repr(str(data)))
    snippet = snippet.replace('overrides=["train.max_steps=1000"]', f"overrides={settings!r}")
    namespace: dict = {}
    exec(compile(snippet, "README training snippet", "exec"), namespace)
    run_dir = namespace["run_dir"]
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    resumed = namespace["resolve_run"](resume=run_dir, overrides=["train.max_steps=2"])
    assert resumed.step == 1 and train(resumed) == run_dir


def test_inference_snippet_runs(tmp_path):
    """The Python block that translates, with its run folder, photo and output pointed at real files."""
    from sesim.training.loop import train
    from tests.helpers import tiny_config, tiny_data

    data = tiny_data(tmp_path / "data")
    run_dir = train(tiny_config("fsesim", data, tmp_path / "runs", "train.max_steps=1"))
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "from sesim.inference import" in b]
    photo, output = data / "testA" / "0000.png", tmp_path / "translated.png"
    snippet = snippet.replace('"runs/001-fsesim"', repr(str(run_dir)))
    snippet = snippet.replace('"photo.jpg"', repr(str(photo))).replace('"translated.png"', repr(str(output)))
    exec(compile(snippet, "README inference snippet", "exec"), {})
    from PIL import Image

    assert Image.open(output).size == Image.open(photo).size
