"""The training loop: one function, the method does the algorithm, this does the chores."""

from __future__ import annotations

import copy
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sesim.backbones import WeightsUnavailableError
from sesim.backbones.vgg import VGG16_FILE
from sesim.backbones.weights import hub_checkpoint_path
from sesim.config import (
    RESUMABLE,
    ConfigError,
    RunConfig,
    absolute_paths,
    apply_override,
    check_resumable,
    to_yaml,
    validate,
)
from sesim.data.images import DataError, list_images
from sesim.data.unpaired import StepSampler, UnpairedImages, domain_folders, mix_seed
from sesim.methods import METHODS, NonFiniteLoss, Optimization, TranslationMethod, build_generator
from sesim.training import distributed
from sesim.training.checkpoint import (
    CheckpointError,
    link_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from sesim.training.distributed import Processes
from sesim.training.logging import RunLogger, new_run_dir, save_grid, write_samples_page
from sesim.training.validation import Validator


class DeviceError(ValueError):
    """The requested device does not exist here."""


class TrainingStopped(RuntimeError):
    """Training could not go on (too many non-finite losses); the last good checkpoint is intact."""


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint of the last finished step was saved."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}")
        self.run_dir, self.step = run_dir, step


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag the loop reads between steps (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, number: int, frame) -> None:
        self.signal = number

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _own_process_group(worker_id: int) -> None:
    """Loader workers leave the main process's process group, so a signal sent to the whole group
    (Ctrl-C in a terminal, ``timeout``, ``kill -- -PID``, schedulers) reaches only the main process:
    it finishes the step, saves and shuts the workers down itself. A worker killed by such a signal
    would otherwise raise in the main process in the middle of a step, before anything is saved.
    Workers still exit when the main process dies (PyTorch's parent watchdog)."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:  # already a group or session leader: nothing to leave
            pass


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"train.device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"train.device={name}: no CUDA device is available here; use auto or cpu")
    return device


def schedule(constant_steps: int, total_steps: int):
    """Per-step learning-rate factor: 1 for ``constant_steps``, then linear to 0 at ``total_steps``."""
    decay = max(1, total_steps - constant_steps)
    return lambda step: 1.0 - max(0, step - constant_steps) / decay


def epoch_schedule(epochs: int, decay_epochs: int, total_steps: int):
    """The CycleGAN / CUT / F-LSeSim rule, once per epoch: ``1 - max(0, e + 1 - epochs) /
    (decay_epochs + 1)`` for the 0-based epoch ``e`` (it never reaches 0). An epoch is
    ``total_steps / (epochs + decay_epochs)`` steps, so a compressed run keeps the rule's shape.

    >>> factor = epoch_schedule(2, 2, 40)  # 10 steps an epoch
    >>> [round(factor(step), 3) for step in (0, 9, 10, 19, 20, 29, 30, 39)]
    [1.0, 1.0, 1.0, 1.0, 0.667, 0.667, 0.333, 0.333]
    """
    length = total_steps / max(1, epochs + decay_epochs)
    return lambda step: 1.0 - max(0, int(step // length) + 1 - epochs) / (decay_epochs + 1)


def rng_state(query_rng: torch.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "queries": query_rng.get_state(),
    }


def set_rng_state(state: dict, query_rng: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    query_rng.set_state(state["queries"])


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 autocast on CUDA cards that support it, full precision elsewhere (CPUs
    without bf16 matrix units run bf16 slower than fp32). Returns the autocast dtype or ``None``."""
    if precision == "auto":
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use else None
    return torch.bfloat16 if precision == "bf16" else None


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of weights, optimizer states and input batches: float64 for ``fp64`` reference
    runs, float32 otherwise (bf16 is autocast over float32 weights)."""
    return torch.float64 if precision == "fp64" else torch.float32


def _process_states(processes: Processes, query_rng: torch.Generator, method: TranslationMethod) -> list:
    """Every process's RNG and image pool (collective: all processes call it)."""
    pools = {name: pool.state_dict() for name, pool in method.pools.items()}
    return processes.gather({"rng": rng_state(query_rng), "pools": pools})


def _restore_process_state(
    checkpoint: dict, processes: Processes, query_rng: torch.Generator, method: TranslationMethod, device
) -> str | None:
    """Restore this process's RNG and pool. With another number of processes than the checkpoint
    had, the shared query RNG continues and per-process randomness is re-seeded from (seed, rank,
    step); returns a note saying so."""
    states = checkpoint["processes"]
    if len(states) == processes.world_size:
        for name, pool in method.pools.items():
            pool.load_state_dict(states[processes.rank]["pools"][name], device)
        set_rng_state(states[processes.rank]["rng"], query_rng)
        return None
    seed = checkpoint["config"]["train"]["seed"]
    query_rng.set_state(states[0]["rng"]["queries"])
    reseed = mix_seed(seed, processes.rank, checkpoint["step"])
    torch.manual_seed(reseed)
    random.seed(reseed)
    for name, pool in method.pools.items():
        method.pools[name] = type(pool)(pool.size, seed=mix_seed(reseed, len(name)))
    return (
        f"resumed with {processes.world_size} processes (the checkpoint had {len(states)}): weights, optimizers, "
        "schedule, data order and query positions continue exactly; image pools start empty and "
        "per-process randomness is re-seeded"
    )


def build_dataset(config: RunConfig) -> UnpairedImages:
    """The training images of ``config.data`` (the folders are checked and listed here)."""
    d, t = config.data, config.train
    folder_a, folder_b = (d.folder_a, d.folder_b) if d.folder_a is not None else domain_folders(d.root)
    if d.direction == "BtoA":
        folder_a, folder_b = folder_b, folder_a
    return UnpairedImages(
        folder_a, folder_b, t.seed, d.preprocess, d.load_size, d.crop_size, d.flip,
        skip_bad=d.on_bad_image == "skip", cache=d.cache_images, zoom=d.zoom,
    )  # fmt: skip


def build_method(config: RunConfig, device: torch.device, rank: int = 0) -> TranslationMethod:
    """The method of ``config`` with its networks, content term and optimizers (on the CPU)."""
    t = config.train
    try:
        return METHODS[config.method](
            config.model.generator,
            config.model.discriminator,
            config.loss,
            config.weights,
            Optimization(t.lr, t.betas, t.pool_size, t.seed + rank),
            check_finite=t.nan_guard,
            autocast=resolve_precision(t.precision, device),
        )
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(_weights_hint(config, error)) from None


def _weights_hint(config: RunConfig, error: WeightsUnavailableError) -> str:
    """The library's message in the words of the config keys a user sets."""
    loss = config.loss
    if loss.backbone == "vgg16" and loss.backbone_weights == "imagenet":
        return (
            f"loss.backbone=vgg16 needs ImageNet VGG16 weights: none in the torch hub cache and no download here. "
            f"Put {VGG16_FILE} in {hub_checkpoint_path(VGG16_FILE).parent}, or --set loss.backbone_weights=PATH, "
            "or train offline with --set loss.backbone=efficientnet_lite0 (weights ship with SeSim; its default "
            "taps are taken)"
        )
    return f"loss.backbone_weights={loss.backbone_weights}: {error}"


def preflight(config: RunConfig) -> list[str]:
    """Everything a real start checks, without training: data folders and their images, the
    device, the method (taps, backbone weights, network settings), validation folders, the output
    folder. Returns what was found, one line each; a problem raises its one-line error."""
    if config.data.root is None and config.data.folder_a is None:
        raise ConfigError("no data: pass --data DIR (with trainA/ and trainB/) or set data.folder_a and data.folder_b")
    dataset = build_dataset(config)
    device = pick_device(config.train.device)
    method = build_method(config, torch.device("cpu"))
    parameters = {name: sum(p.numel() for p in m.parameters()) for name, m in method.trained_modules().items()}
    lines = [
        f"data: {len(dataset.files_a)} A images in {dataset.files_a[0].parent}, "
        f"{len(dataset.files_b)} B images in {dataset.files_b[0].parent}",
        f"device: {device}; method {config.method}: "
        + ", ".join(f"{name} {count / 1e6:.2f}M parameters" for name, count in parameters.items()),
        f"loss: {config.loss.structure} on {config.loss.backbone} taps {', '.join(config.loss.taps)} (weights found)",
    ]
    v = config.validation
    if v.every:
        lines.append(f"validation: {len(list_images(v.folder_a, 'validation.folder_a'))} held-out images")
    out = Path(config.log.out_dir)
    existing = next((parent for parent in (out, *out.parents) if parent.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        raise ConfigError(
            f"log.out_dir: cannot write in {existing}; choose a writable folder with --set log.out_dir=DIR"
        )
    return lines


def banner(
    run_dir: Path,
    step: int,
    dataset: UnpairedImages,
    device: torch.device,
    config: RunConfig,
    processes: int,
    constant_steps: int,
    total_steps: int,
) -> str:
    """What a run is about to do, in a few lines: folder, data, device, steps and lr schedule."""
    t = config.train
    per_epoch = math.ceil(len(dataset) / t.batch_size)
    scheduled = (t.epochs + t.decay_epochs) * per_epoch
    start = f"resumed at step {step}" if step else "new run"
    lines = [
        f"sesim: {run_dir} ({start}, method {config.method}, preset name {config.name})",
        f"  data: {len(dataset.files_a)} A images from {dataset.files_a[0].parent}, "
        f"{len(dataset.files_b)} B images from {dataset.files_b[0].parent}",
        f"  device: {device}, precision {t.precision}, {processes} process(es), batch {t.batch_size} "
        f"({per_epoch} steps per epoch)",
        f"  steps: {total_steps} (~{total_steps / per_epoch:.1f} epochs); lr {t.lr:g} constant to step "
        + (
            f"{constant_steps}, then down by 1/{t.decay_epochs + 1} each epoch to "
            f"{1 / (t.decay_epochs + 1):.3g} x lr (train.schedule=epoch, as the original code)"
            if t.schedule == "epoch"
            else f"{constant_steps}, then linear to 0 at step {total_steps} (train.schedule=step)"
        ),
    ]
    if t.max_steps and t.max_steps != scheduled:
        lines.append(
            f"  train.max_steps={t.max_steps} {'compresses' if total_steps < scheduled else 'stretches'} the "
            f"preset's {t.epochs}+{t.decay_epochs} epochs "
            f"({scheduled} steps) into {total_steps}, keeping their constant/decay proportion"
        )
    return "\n".join(lines)


def resume_config(resume: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[RunConfig, dict]:
    """The stored config of the run to resume, with the ``--set`` overrides a resume may apply
    (:data:`sesim.config.RESUMABLE`; anything else is a ``ConfigError`` naming the flag), and the
    checkpoint it continues from."""
    checkpoint = load_checkpoint(resume)
    data = copy.deepcopy(checkpoint["config"])
    for assignment in overrides:
        check_resumable(assignment)
        apply_override(data, assignment)
    config = validate(data, f"{resume} (stored config)", overrides)
    if config.train.max_steps is not None and config.train.max_steps < checkpoint["step"]:
        raise ConfigError(
            f"train.max_steps={config.train.max_steps} is below the step {checkpoint['step']} the run has reached; "
            "a resumed run can only go on (--set train.max_steps=N with N larger)"
        )
    return config, checkpoint


def train(config: RunConfig | None, resume: str | Path | None = None, checkpoint: dict | None = None) -> Path:
    """Train a translator; returns the run directory.

    Under ``torchrun`` each process runs this function; rank 0 writes the run directory.

    Args:
        config: the resolved run configuration (its data must be set); with ``resume``, ``None``
            takes the run's stored config, or pass :func:`resume_config`'s (changes only in
            :data:`sesim.config.RESUMABLE` keys).
        resume: a run directory (or checkpoint file) to continue exactly where it stopped, in the
            same directory (with any number of processes).
        checkpoint: the loaded checkpoint of ``resume``, when the caller already has it.
    """
    if resume is not None:
        checkpoint = checkpoint if checkpoint is not None else load_checkpoint(resume)
        stored = validate(checkpoint["config"], f"{resume} (stored config)")
        config = stored if config is None else config
        _check_same_run(stored, config)
    if config is None:
        raise ValueError("train: give a config, or resume=RUN_DIR")
    if config.data.root is None and config.data.folder_a is None:
        raise ConfigError("no data: pass --data DIR (with trainA/ and trainB/) or set data.folder_a and data.folder_b")
    if resume is not None:
        _check_data_is_here(config)
    else:
        config = absolute_paths(config)
    if config.train.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, chosen before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    processes, device_name = distributed.start(config.train.device)
    try:
        return _train(config, checkpoint, resume, processes, pick_device(device_name))
    finally:
        distributed.stop(processes)


def _check_same_run(stored: RunConfig, config: RunConfig) -> None:
    """A resumed config may differ from the stored one only where a resume may change it."""
    flat_stored, flat_new = _flatten(stored.model_dump(mode="json")), _flatten(config.model_dump(mode="json"))
    changed = [key for key in flat_new if flat_new[key] != flat_stored.get(key) and key not in RESUMABLE]
    if changed:
        raise ConfigError(f"{changed[0]}: cannot change when resuming; start a new run or use --init-from RUN_DIR")


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
        if not Path(folder).is_dir():
            raise DataError(
                f"the run's data folder {folder} is not found from {Path.cwd()}; pass --data DIR "
                "(or --set data.folder_a=... --set data.folder_b=...) to say where it is now"
            )


def _load_initial_weights(method: TranslationMethod, source: str) -> list[str]:
    """Fine-tuning: copy the networks a checkpoint has into the new run's; returns the ones it lacked."""
    document = load_checkpoint(source)
    missing = []
    for name, module in method.trained_modules().items():
        if name not in document["networks"]:
            missing.append(name)
            continue
        try:
            module.load_state_dict(document["networks"][name])
        except RuntimeError as error:
            first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
            raise CheckpointError(
                f"train.init_from={source}: its {name} does not fit this config's ({first}); "
                "use the same network settings (model.*) as the run you start from"
            ) from None
    return missing


def _train(config: RunConfig, checkpoint: dict | None, resume, processes: Processes, device: torch.device) -> Path:
    t, log, d = config.train, config.log, config.data
    if t.batch_size % processes.world_size:
        raise ValueError(
            f"train.batch_size={t.batch_size} is the global batch; it must be divisible by the "
            f"{processes.world_size} processes"
        )
    local_batch = t.batch_size // processes.world_size

    # One seed governs data order, crops and query positions (shared by all processes); the
    # image pool and colour jitter draw from per-process seeds.
    torch.manual_seed(t.seed + processes.rank)
    random.seed(t.seed + processes.rank)
    query_rng = torch.Generator(device=device).manual_seed(t.seed)

    dataset = build_dataset(config)
    steps_per_epoch = math.ceil(len(dataset) / t.batch_size)
    scheduled = (t.epochs + t.decay_epochs) * steps_per_epoch
    total_steps = t.max_steps or scheduled
    # With max_steps, keep the preset's constant/decay proportion.
    constant_steps = round(total_steps * t.epochs / max(1, t.epochs + t.decay_epochs))
    if t.schedule == "epoch":
        factor = epoch_schedule(t.epochs, t.decay_epochs, total_steps)
    else:
        factor = schedule(constant_steps, total_steps)

    dtype = weight_dtype(t.precision)
    method = build_method(config, device, processes.rank).to(device, dtype)
    nhwc = device.type == "cuda" if t.channels_last == "auto" else t.channels_last
    layout = torch.channels_last if nhwc else torch.contiguous_format
    method.to(memory_format=layout)
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for name, optimizer in method.optimizers.items()
    }

    step, resume_note, notes = 0, None, []
    if checkpoint is None and t.init_from:
        missing = _load_initial_weights(method, t.init_from)
        notes.append(
            f"weights from {t.init_from}" + (f" (not in it, so fresh: {', '.join(missing)})" if missing else "")
        )
    if checkpoint is not None:
        run_dir = Path(resume) if Path(resume).is_dir() else Path(resume).parent.parent
        for name, module in method.trained_modules().items():
            module.load_state_dict(checkpoint["networks"][name])
        for name, optimizer in method.optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        for name, scheduler in schedulers.items():
            scheduler.load_state_dict(checkpoint["schedulers"][name])
        resume_note = _restore_process_state(checkpoint, processes, query_rng, method, device)
        step = checkpoint["step"]
        stored = _flatten(validate(checkpoint["config"], "stored config").model_dump(mode="json"))  # defaults filled
        changes = [
            f"{k}: {stored.get(k)} -> {v}"
            for k, v in _flatten(config.model_dump(mode="json")).items()
            if stored.get(k) != v
        ]
        if changes:
            notes.append("changed on resume: " + "; ".join(changes))

    if t.compile != "off":
        for module in method.compile_targets():
            module.compile(mode=t.compile)
    method.distribute(lambda module: processes.wrap(module, device), processes.all_true)

    validator = Validator(config.validation, device) if config.validation.every and processes.main else None
    best = checkpoint.get("best") if checkpoint is not None else None

    def save(*names: str) -> None:
        states = _process_states(processes, query_rng, method)  # every process takes part
        if not processes.main:
            return
        payload = {
            "config": config.model_dump(mode="json"),
            "step": step,
            "networks": {name: m.state_dict() for name, m in method.trained_modules().items()},
            "optimizers": {name: o.state_dict() for name, o in method.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in schedulers.items()},
            "processes": states,
            "best": best,
        }
        first = save_checkpoint(run_dir / "checkpoints" / names[0], payload)
        for name in names[1:]:  # latest.pt: the same file, not a second copy
            link_checkpoint(first, run_dir / "checkpoints" / name)
        prune_checkpoints(run_dir / "checkpoints", log.keep_checkpoints)

    loader = DataLoader(
        dataset,
        batch_size=local_batch,
        sampler=StepSampler(start=step * t.batch_size, rank=processes.rank, world_size=processes.world_size),
        num_workers=d.workers,
        persistent_workers=d.workers > 0,
        prefetch_factor=d.prefetch if d.workers > 0 else None,
        pin_memory=device.type == "cuda",
        # Its own generator: creating the iterator must not consume the global RNG (exact resume).
        generator=torch.Generator().manual_seed(t.seed),
        worker_init_fn=_own_process_group,
    )
    main, fresh = processes.main, checkpoint is None
    if main and (fresh or notes):  # a new run's folder, or a resumed run's config as it now is
        run_dir = new_run_dir(log.out_dir, config.name) if fresh else run_dir
        (run_dir / "config.yaml").write_text(to_yaml(config))
    run_dir = Path(str(processes.gather(str(run_dir) if main else None)[0]))
    logger = RunLogger(run_dir, tensorboard=log.tensorboard) if main else None
    if main:
        print(banner(run_dir, step, dataset, device, config, processes.world_size, constant_steps, total_steps))
    bar = tqdm(total=total_steps, initial=step, disable=not (log.progress and main), unit="step", dynamic_ncols=True)
    for note in [resume_note, *notes] if main else []:
        if note:
            bar.write(f"note: {note}", file=sys.stderr)
            logger.event(step, "resumed" if note is resume_note else "note", note=note)
    nonfinite_steps = 0
    skipped_files: set[str] = set()
    stops = _StopRequests()
    started, budget = time.monotonic(), None if t.max_minutes is None else 60 * t.max_minutes
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(t.deterministic or was_deterministic)
    try:
        with stops:
            for batch in loader:
                if step >= total_steps:
                    break
                real_a = batch["a"].to(device, dtype, non_blocking=True, memory_format=layout)
                real_b = batch["b"].to(device, dtype, non_blocking=True, memory_format=layout)
                for path in (p for joined in batch["skipped"] for p in joined.split("\n") if p):
                    if path not in skipped_files:
                        skipped_files.add(path)
                        bar.write(f"warning: skipped unreadable image {path}", file=sys.stderr)
                        if main:
                            logger.event(step + 1, "skipped_image", file=path, skipped_so_far=len(skipped_files))
                try:
                    stats = method.training_step(real_a, real_b, query_rng)
                except NonFiniteLoss as error:
                    # No weight saw the bad loss (all processes skipped it together); record where
                    # it came from and go on (or stop).
                    nonfinite_steps += 1
                    files = [*batch["path_a"], *batch["path_b"]]
                    if main:
                        logger.event(step + 1, "non_finite_loss", loss=error.name, value=str(error.value), files=files)
                    bar.write(f"warning: step {step + 1}: {error}; files: {', '.join(files)}", file=sys.stderr)
                    if nonfinite_steps > t.max_nonfinite_steps:
                        raise TrainingStopped(
                            f"{nonfinite_steps} steps with non-finite losses (train.max_nonfinite_steps="
                            f"{t.max_nonfinite_steps}); last good checkpoint: {run_dir / 'checkpoints' / 'latest.pt'}"
                        ) from None
                    stats = None
                for scheduler in schedulers.values():
                    scheduler.step()
                step += 1
                bar.update(1)
                if stats is not None and (step % log.every == 0 or step == total_steps):
                    # The only place a step's scalars reach the host.
                    scalars = {f"loss/{k}": float(v) for k, v in processes.mean(stats).items()}
                    scalars["lr"] = schedulers["generator"].get_last_lr()[0]
                    if main:
                        logger.log(step, scalars)
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in scalars.items() if k != "lr"})
                if main and (step % log.sample_every == 0 or step == total_steps):
                    with torch.no_grad():
                        fake_b = method.generator(real_a)
                    save_grid(run_dir / "samples" / f"step_{step:07d}.png", [real_a[:4], fake_b[:4], real_b[:4]])
                    write_samples_page(run_dir, f"{config.name}: {run_dir.name}")
                v = config.validation
                if v.every and (step % v.every == 0 or step == total_steps):
                    # Rank 0 scores the held-out split; every process learns whether it improved.
                    value = validator(method.generator) if main else None
                    improved = main and validator.better(value, best["value"] if best else None)
                    value, improved = processes.gather((value, improved))[0]
                    if main:
                        logger.log(step, {f"val/{v.metric}": value})
                    if improved:
                        best = {"metric": v.metric, "value": value, "step": step}
                        save("best.pt")
                        if main:
                            logger.event(step, "best", metric=v.metric, value=value)
                stop_now = processes.any_flag(stops.signal is not None)
                # The wall-clock budget: every process stops at the same step (rank 0's clock decides).
                spent = budget is not None and processes.any_flag(main and time.monotonic() - started >= budget)
                if step % log.checkpoint_every == 0 or step == total_steps or stop_now or spent:
                    save(f"step_{step:07d}.pt", "latest.pt")
                if stop_now:
                    raise Interrupted(run_dir, step)
                if spent and step < total_steps:
                    if main:
                        minutes = (time.monotonic() - started) / 60
                        logger.event(step, "time_budget", minutes=round(minutes, 2), max_minutes=t.max_minutes)
                        bar.write(
                            f"note: train.max_minutes={t.max_minutes:g} spent at step {step} of {total_steps}; "
                            f"checkpoint saved. Continue with: sesim train --resume {run_dir}",
                            file=sys.stderr,
                        )
                    break
    except BaseException:
        if fresh and step == 0 and main:  # nothing trained: leave no empty numbered folder behind
            if logger is not None:
                logger.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        bar.close()
        if logger is not None:
            logger.close()
    return run_dir


def load_generator(checkpoint_path: str | Path, device: torch.device | str = "cpu", document: dict | None = None):
    """Rebuild the trained generator from a checkpoint's own config (no architecture flags).
    ``document``: the checkpoint already loaded from ``checkpoint_path`` (read once, not twice)."""
    document = load_checkpoint(checkpoint_path) if document is None else document
    config = validate(document["config"], f"{checkpoint_path} (stored config)")
    generator = build_generator(config.model.generator)
    try:
        generator.load_state_dict(document["networks"]["generator"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{checkpoint_path}: generator weights do not fit its config ({error})") from None
    return generator.to(device).eval(), config


__all__ = ["DeviceError", "load_generator", "pick_device", "train"]
