"""The YAML presets shipped with SeSim: where they are and what each is. Light on purpose (no
torch, no pydantic): ``sesim --help`` and ``sesim presets`` read it."""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).parent / "configs"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def preset_summary(name: str) -> str:
    """A preset's description: its leading comment lines, without ``Generated from ...``."""
    lines = []
    for line in (PRESETS_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("# ").rstrip()
        if text and not text.startswith("Generated from"):
            lines.append(text)
    return " ".join(lines)
