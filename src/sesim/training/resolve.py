"""From what a user asks for to the run that trains: :func:`resolve_run` is the one place a run's
config is put together (a preset or a resumed run's stored config, the flags as typed updates)
and every rule across its settings is checked, before anything is built or written."""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sesim.checkpoint import load_checkpoint
from sesim.config import (
    RESUMABLE,
    RunConfig,
    Update,
    absolute_paths,
    apply_updates,
    check_resumable,
    load_config,
    migrate_stored,
    updates,
    validate,
)
from sesim.errors import ConfigError, DataError
from sesim.methods import METHODS
from sesim.presets import preset_names
from sesim.training.chores import RunLock

NO_DATA = (
    "no data: --data DIR is required (a folder with trainA/ and trainB/), or --set data.folder_a=A "
    "--set data.folder_b=B"
)


@dataclass(frozen=True)
class ResolvedRun:
    """A run ready to train: its config and, for a resume, the checkpoint it continues from."""

    config: RunConfig
    checkpoint: dict | None = None  # the loaded checkpoint of a resume
    resume: Path | None = None  # what --resume named: a run folder or one of its checkpoint files
    changes: dict[str, tuple] = field(default_factory=dict)  # a resume's {key: (stored, new)}
    record_stale: bool = False  # a resume's config.yaml no longer records the run's settings: rewrite it

    @property
    def step(self) -> int:
        """The step the run starts from."""
        return 0 if self.checkpoint is None else self.checkpoint["step"]


def resolve_run(
    preset: str | RunConfig | None = None,
    *,
    resume: str | Path | None = None,
    data: str | Path | None = None,
    init_from: str | Path | None = None,
    overrides: Iterable[str | Update] = (),
) -> ResolvedRun:
    """The run ``sesim train`` (and :func:`sesim.training.loop.train`) trains.

    Args:
        preset: a preset name, a YAML file or a config; ``None`` with ``resume``.
        resume: a run folder (or its newest checkpoint file) to continue exactly.
        data: a folder with ``trainA/`` and ``trainB/`` (``--data``; for a resume: where its data is now).
        init_from: a run whose weights a new run starts from (``--init-from``).
        overrides: ``--set KEY=VALUE`` texts or :class:`~sesim.config.Update` s; on a resume only
            the keys of :data:`~sesim.config.RESUMABLE`.

    Every problem is a one-line ``ConfigError`` / ``DataError`` naming the flag that caused it.
    """
    changes = updates(overrides)
    flags = []
    if data is not None:
        where = str(Path(data).absolute()) if resume is not None else str(data)
        flags.append(Update("data.root", where, f"--data {data}"))
        if resume is not None:  # the run's data moved: a folder with trainA/ and trainB/ replaces what it had
            flags += [Update("data.folder_a", None, f"--data {data}"), Update("data.folder_b", None, f"--data {data}")]
    if init_from is not None:
        flags.append(Update("train.init_from", str(init_from), f"--init-from {init_from}"))
    for flag in flags:
        twice = [change for change in changes if change.key == flag.key]
        if twice:
            raise ConfigError(
                f"train: {flag.flag.split()[0]} and {twice[0].flag} both set {flag.key}; give one of them"
            )
    if resume is not None:
        if preset is not None:
            given = "a config" if isinstance(preset, RunConfig) else f"a preset ({preset})"
            raise ConfigError(f"train: give {given} or --resume {resume}, not both")
        if init_from is not None:
            raise ConfigError("train: --init-from starts a new run; --resume continues one: give one of them")
        run = _resumed(resume, [*changes, *flags])
    elif preset is None:
        raise ConfigError("train: give a preset or YAML file (presets: " + ", ".join(preset_names()) + ")")
    else:
        run = ResolvedRun(absolute_paths(_new(preset, [*changes, *flags])))
    check(run.config, int(os.environ.get("WORLD_SIZE", "1")))
    return run


def check(config: RunConfig, processes: int = 1) -> None:
    """The rules across settings that the schema cannot see: data is given, the method can train
    with these settings (its ``check``), the global batch divides among the processes."""
    if config.data.root is None and config.data.folder_a is None:
        raise ConfigError(NO_DATA)
    METHODS[config.method].check(config)
    check_divisible(config.train.batch_size, processes)


def check_divisible(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise ConfigError(
            f"train.batch_size={batch_size} is the global batch; it must be divisible by the {processes} processes"
        )


def _new(preset: str | RunConfig, changes: list[Update]) -> RunConfig:
    if isinstance(preset, str):
        return load_config(preset, changes)
    if not changes:
        return preset
    return validate(apply_updates(preset.model_dump(mode="json"), changes), "the given config", changes)


def _resumed(resume: str | Path, changes: list[Update]) -> ResolvedRun:
    """The stored config of the run to resume with the changes a resume may make, and everything a
    resume checks before it trains: the newest checkpoint of its run, a config file not edited by
    hand, the schedule still ahead, the data where the run says, nobody training the folder now."""
    checkpoint = load_checkpoint(resume)
    check_newest(resume, checkpoint)
    source = f"{resume} (stored config)"
    stored = validate(checkpoint["config"], source)
    stale = check_hand_edits(resume, stored)
    config = stored
    if changes:  # an unknown key or a bad value is named as such before the resume rule is applied
        config = validate(apply_updates(copy.deepcopy(checkpoint["config"]), changes), source, changes)
    for change in changes:
        check_resumable(change)
    if config.train.max_steps is not None and config.train.max_steps < checkpoint["step"]:
        raise ConfigError(
            f"train.max_steps={config.train.max_steps} is below the step {checkpoint['step']} the run has reached; "
            "a resumed run can only go on (--set train.max_steps=N with N larger)"
        )
    _check_data_is_here(config)
    if os.environ.get("RANK", "0") == "0":
        lock = RunLock()
        lock.acquire(resumed_run_dir(resume))  # refuses while another process trains the run
        lock.release()
    return ResolvedRun(config, checkpoint, Path(resume), config_changes(stored, config), stale)


def resumed_run_dir(resume: str | Path) -> Path:
    """The run folder a ``--resume`` names: the folder itself, or the one a checkpoint file sits in."""
    return Path(resume) if Path(resume).is_dir() else Path(resume).parent.parent


def check_newest(resume: str | Path, checkpoint: dict) -> None:
    """A run resumes from its newest checkpoint: resuming an older step file in place would write
    the steps after it over the newer ones (and move ``latest.pt`` back)."""
    if Path(resume).is_dir():
        return
    run_dir = resumed_run_dir(resume)
    names = (f.name for f in (run_dir / "checkpoints").glob("step_*.pt"))
    steps = [int(m.group(1)) for name in names if (m := re.fullmatch(r"step_(\d+)\.pt", name))]
    newest = max(steps, default=checkpoint["step"])
    if checkpoint["step"] < newest:
        raise ConfigError(
            f"--resume {resume}: step {checkpoint['step']} of {run_dir}, which already reached step {newest}; "
            f"resuming it there would overwrite the newer checkpoints. Continue the run with --resume {run_dir}, "
            f"or start a new run from that step with --init-from {resume}"
        )


def check_hand_edits(resume: str | Path, stored: RunConfig) -> bool:
    """A run's ``config.yaml`` records what trains it and is never read back. A resume refuses a
    file that no longer matches the checkpoint in a setting no resume may change (an edit by
    hand), and says which value goes on where it differs in one a resume may change (an edit, or
    the ``--set`` of a resume that stopped before its first checkpoint). Returns whether the file
    must be written again (missing, or holding a value the resume overrules; a comment is kept)."""
    path = resumed_run_dir(resume) / "config.yaml"
    if not path.is_file():
        return True
    try:
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError("not a mapping")
        migrate_stored(data)
        edited = config_changes(stored, validate(data, str(path)))
    except (yaml.YAMLError, ConfigError) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"{path} was edited and no longer reads as this run's config ({reason}); SeSim never reads it back: "
            "put it back as it was (the checkpoint holds the run's settings) and change what a resume may change "
            "with --set KEY=VALUE"
        ) from None
    fixed = {key: change for key, change in edited.items() if key not in RESUMABLE}
    if fixed:
        shown = "; ".join(f"{key}: {old} -> {new}" for key, (old, new) in list(fixed.items())[:3])
        more = f" (and {len(fixed) - 3} more)" if len(fixed) > 3 else ""
        raise ConfigError(
            f"{path} was edited by hand ({shown}{more}), which no resume can change (it made the weights); SeSim "
            "never reads the file back: put it back, or start a new run (--init-from RUN to keep the weights)"
        )
    if edited and os.environ.get("RANK", "0") == "0":  # a resume's --set no checkpoint recorded, or an edit
        shown = "; ".join(f"{key}: {new} in the file, {old} in the checkpoint" for key, (old, new) in edited.items())
        print(f"note: {path} differs from the checkpoint ({shown}); the checkpoint's values go on and the file "
              "is rewritten to them, --set KEY=VALUE changes them", file=sys.stderr)  # fmt: skip
    return bool(edited)


def config_changes(stored: RunConfig, config: RunConfig) -> dict[str, tuple]:
    """``{dotted key: (stored value, new value)}`` for every key where ``config`` differs."""
    flat_stored, flat_new = _flatten(stored.model_dump(mode="json")), _flatten(config.model_dump(mode="json"))
    return {key: (flat_stored.get(key), value) for key, value in flat_new.items() if flat_stored.get(key) != value}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_data_is_here(config: RunConfig) -> None:
    """Runs started before paths were stored absolute hold a folder relative to where they began."""
    folders = [config.data.folder_a, config.data.folder_b] if config.data.folder_a else [config.data.root]
    for folder in folders:
        if folder is not None and not Path(folder).is_dir():
            raise DataError(
                f"the run's data folder {folder} is not found from {Path.cwd()}; pass --data DIR "
                "(or --set data.folder_a=... --set data.folder_b=...) to say where it is now"
            )


def resume_config(resume: str | Path, overrides: Iterable[str | Update] = ()) -> tuple[RunConfig, dict]:
    """The config a resume goes on with and its checkpoint (``resolve_run(resume=...)``, as a pair)."""
    run = resolve_run(resume=resume, overrides=overrides)
    return run.config, run.checkpoint
