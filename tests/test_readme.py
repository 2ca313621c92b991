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
