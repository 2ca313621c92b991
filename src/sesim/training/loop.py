"""The training loop. :func:`train` takes a run :func:`~sesim.training.resolve.resolve_run`
resolved; :func:`run_training` reads as its outline in labelled sections (set up, restore, the run
folder, the guards, the steps: log, sample, validate, save, stop; a failure); the method does the
algorithm, the chores live in :mod:`sesim.training.chores` and :mod:`sesim.training.state`."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader

from sesim import errors
from sesim.backbones.vgg import VGG16_FILE
from sesim.backbones.weights import hub_checkpoint_path
from sesim.config import RunConfig, TrainConfig, to_yaml
from sesim.data.unpaired import StepSampler, UnpairedImages, check_survey, domain_folders, oversized
from sesim.errors import ConfigError, DeviceError, OutOfMemory, WeightsUnavailableError, one_line
from sesim.evaluation.held_out import HELD_OUT_METRICS
from sesim.methods import METHODS, NonFiniteLoss, Optimization, TranslationMethod
from sesim.outputs import check_writable
from sesim.runtime import (
    available_memory,
    is_out_of_memory,
    memory_cap,
    pick_device,
    resolve_precision,
    saved_bytes,
    weight_dtype,
)
from sesim.training import distributed
from sesim.training.chores import (
    Batches,
    BestScore,
    NonFiniteBudget,
    NonFiniteStep,
    RunLock,
    SkippedFiles,
    SkippedUpdates,
    StepPlan,
    StopRequests,
    Throughput,
    TimeBudget,
    TrainingStopped,
    own_process_group,
    plan_steps,
)
from sesim.training.distributed import Processes
from sesim.training.graphs import prepare_step, use_cuda_graphs
from sesim.training.logging import Progress, RunLogger, new_run_dir, save_grid, write_samples_page
from sesim.training.resolve import ResolvedRun, resolve_run, resume_config, resumed_run_dir
from sesim.training.state import Checkpointer, load_initial_weights, restore_training
from sesim.training.validation import Validator, held_out_files


class Interrupted(errors.Interrupted):
    """SIGINT/SIGTERM arrived; a checkpoint of the last finished step was saved."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved. Continue with: sesim train --resume {run_dir}")
        self.run_dir, self.step = run_dir, step


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
    """The method of ``config`` with its networks, structure term and optimizers (on the CPU)."""
    t = config.train
    try:
        method = METHODS[config.method](
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
    return method.checkpoint_activations() if t.activation_checkpointing else method


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


def preflight(config: RunConfig, decode: bool = False, run: Run | None = None) -> list[str]:
    """Everything a real start checks, without training, for a resolved run's config: data
    folders and every image's header (``decode``: every image decoded in full), shapes that batch,
    the device, the method (taps, backbone weights, network settings), the validation folders and
    their pairing, the output folder. Returns what was found, one line each; a problem raises its
    one-line error. ``run``: the run already set up (the probe's), not built a second time."""
    device = pick_device(config.train.device, "train.device")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if run is None:
        dataset = build_dataset(config)
        images = check_survey(dataset, decode)
        method = build_method(config, torch.device("cpu"))
    else:
        dataset, method = run.dataset, run.method
        images = check_survey(dataset, decode) if decode else run.images
    use_cuda_graphs(config.train.cuda_graphs, method, device, world_size)  # "on": can it?
    parameters = {name: sum(p.numel() for p in m.parameters()) for name, m in method.trained_modules().items()}
    plan = plan_steps(config.train, len(dataset))
    lines = [
        f"data: {len(dataset.files_a)} A images in {dataset.files_a[0].parent}, "
        f"{len(dataset.files_b)} B images in {dataset.files_b[0].parent}; " + "; ".join(images),
        f"device: {device}, {world_size} process(es); method {config.method}: "
        + ", ".join(f"{name} {count / 1e6:.2f}M parameters" for name, count in parameters.items()),
        f"loss: {config.loss.structure} on {config.loss.backbone} taps {', '.join(config.loss.taps)} (weights found)",
        f"steps: {plan.total_steps} of batch {config.train.batch_size} ({plan.steps_per_epoch} per epoch)",
    ]
    v = config.validation
    if v.every:
        sources, targets = held_out_files(v)
        paired = "paired by name with" if HELD_OUT_METRICS[v.metric].paired else "scored against"
        lines.append(f"validation: {len(sources)} held-out images, {paired} {len(targets)} in {v.folder_b}")
    check_writable([Path(config.log.out_dir) / "config.yaml"], "log.out_dir")
    return lines


def banner(
    run_dir: Path,
    step: int,
    dataset: UnpairedImages,
    device: torch.device,
    config: RunConfig,
    processes: int,
    plan: StepPlan,
) -> str:
    """What a run is about to do, in a few lines: folder, data, device, steps and lr schedule."""
    t = config.train
    per_epoch, scheduled = plan.steps_per_epoch, plan.scheduled_steps
    constant_steps, total_steps = plan.constant_steps, plan.total_steps
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
    if note := oversized(dataset):
        lines.append(f"  note: {note}")
    if t.max_steps and t.max_steps != scheduled:
        lines.append(
            f"  train.max_steps={t.max_steps} {'compresses' if total_steps < scheduled else 'stretches'} the "
            f"preset's {t.epochs}+{t.decay_epochs} epochs "
            f"({scheduled} steps) into {total_steps}, keeping their constant/decay proportion"
        )
    return "\n".join(lines)


def train(run: ResolvedRun | RunConfig | None, resume: str | Path | None = None) -> Path:
    """Train a translator; returns the run directory.

    Under ``torchrun`` each process runs this function; rank 0 writes the run directory.

    Args:
        run: the run :func:`~sesim.training.resolve.resolve_run` resolved (a new run, or a resume
            with its checkpoint). A config is resolved here as a new run.
        resume: ``train(None, resume=RUN_DIR)`` is ``train(resolve_run(resume=RUN_DIR))``: continue
            a run exactly where it stopped, in the same directory (with any number of processes).
    """
    if not isinstance(run, ResolvedRun):
        run = resolve_run(run, resume=resume)
    elif resume is not None:
        raise TypeError("train: a resolved run knows whether it resumes; pass resume= to resolve_run")
    config = run.config
    if config.train.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, chosen before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    processes, device_name = distributed.start(config.train.device)
    lock = RunLock()
    try:
        device = pick_device(device_name, "train.device")
        with memory_cap(device):
            return run_training(run, processes, device, lock)
    except Exception as error:
        if is_out_of_memory(error) and not isinstance(error, OutOfMemory):  # before the loop: building the run
            raise OutOfMemory(
                f"out of memory on {device_name} while setting up the run ({one_line(error)}); free some memory or "
                "train smaller networks"
            ) from None
        raise
    finally:
        lock.release()
        distributed.stop(processes)


@dataclass
class Run:
    """Everything a run's steps use, made by :func:`set_up`."""

    config: RunConfig
    processes: Processes
    device: torch.device
    dtype: torch.dtype
    layout: torch.memory_format
    dataset: UnpairedImages
    plan: StepPlan
    method: TranslationMethod
    schedulers: dict
    query_rng: torch.Generator
    images: list[str]  # what the survey of the training images found


def set_up(config: RunConfig, processes: Processes, device: torch.device) -> Run:
    """Seeds, data, step plan, the method with its networks and optimizers, lr schedulers (for a
    config :func:`~sesim.training.resolve.resolve_run` resolved)."""
    t = config.train
    # One seed governs data order, crops and query positions (shared by all processes); the
    # image pool and colour jitter draw from per-process seeds.
    torch.manual_seed(t.seed + processes.rank)
    random.seed(t.seed + processes.rank)
    query_rng = torch.Generator(device=device).manual_seed(t.seed)
    dataset = build_dataset(config)
    images = check_survey(dataset)  # every header: an unreadable file or a shape that cannot batch, now
    plan = plan_steps(t, len(dataset))
    dtype = weight_dtype(t.precision)
    layout = torch.channels_last if t.channels_last is True else torch.contiguous_format  # auto: contiguous
    method = build_method(config, device, processes.rank).place(device, dtype, layout)
    check_fits(config, method, dataset, device, processes.world_size)
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(optimizer, plan.factor) for name, optimizer in method.optimizers.items()
    }
    return Run(config, processes, device, dtype, layout, dataset, plan, method, schedulers, query_rng, images)


PROBE_SIDE = 64  # side of the images whose forward pass is measured before a run starts


def check_fits(
    config: RunConfig, method: TranslationMethod, dataset: UnpairedImages, device: torch.device, world_size: int
) -> None:
    """Refuse, before the first step, a run whose generator alone would keep more activations for
    its backward pass than the device has free: measured on a small batch, scaled to the run's
    images and batch (a lower bound: the losses, the discriminator and the backbone add to it)."""
    d, t = config.data, config.train
    generator = method.trained_modules()["generator"]
    parameter = next(generator.parameters())
    images = torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, device=parameter.device, dtype=parameter.dtype)
    try:
        with method.forward_context(device):
            per_pixel = saved_bytes(generator, images) / PROBE_SIDE**2
    except TypeError:  # a generator that needs more than images (multi-modal): no estimate
        return
    if d.preprocess == "none":
        pixels, size = max((w * h for w, h in dataset.sizes.values()), default=0), "whole images"
    else:
        pixels, size = d.crop_size**2, f"{d.crop_size}x{d.crop_size} crops"
    needed = per_pixel * pixels * t.batch_size // world_size
    free = available_memory(device)
    if free is not None and needed > free:
        raise OutOfMemory(
            f"train: batch {t.batch_size // world_size} of {size} needs more than ~{needed / 2**30:.1f} GiB on "
            f"{device} (the generator's activations alone), {free / 2**30:.1f} GiB are free; {memory_fixes(t)}"
        )


def memory_fixes(train: TrainConfig) -> str:
    """What to change when a training step does not fit (the checkpointing a run has not on yet)."""
    checkpointing = "" if train.activation_checkpointing else ", or --set train.activation_checkpointing=true"
    return f"lower train.batch_size or data.crop_size{checkpointing}"


class Restored(NamedTuple):
    """Where a run starts, and what to tell the user about it."""

    step: int
    resumed: str | None  # a resume with another number of processes: what continues exactly
    notes: list[str]


def restore(run: Run, checkpoint: dict | None, changes: dict[str, tuple]) -> Restored:
    """A resumed run continues from ``checkpoint`` (weights, optimizers, schedules, randomness),
    ``changes`` being its config's differences to the stored one; a new one may start from
    ``train.init_from``'s weights."""
    config = run.config
    if checkpoint is None:
        if not config.train.init_from:
            return Restored(0, None, [])
        missing = load_initial_weights(run.method, config.train.init_from)
        fresh = f" (not in it, so fresh: {', '.join(missing)})" if missing else ""
        return Restored(0, None, [f"weights from {config.train.init_from}{fresh}"])
    resumed = restore_training(checkpoint, run.method, run.schedulers, run.processes, run.query_rng, run.device)
    changed = "; ".join(f"{key}: {old} -> {new}" for key, (old, new) in changes.items())
    notes = [f"changed on resume: {changed}"] if changes else []
    if checkpoint.get("written_format", 3) < 3 and config.loss.flip_equivariance:
        notes.append(
            f"this checkpoint (format {checkpoint['written_format']}) was trained with the earlier FastCUT flip "
            "(the discriminator saw flip(G(flip(A)))); it continues with CUT's (the discriminator sees G(flip(A)))"
        )
    return Restored(checkpoint["step"], resumed, notes)


def speed_up(run: Run) -> Callable[[torch.Tensor, torch.Tensor], dict]:
    """``train.compile``, the gradient-carrying calls through DDP when distributed, and the step
    the loop calls: captured as one CUDA graph (``train.cuda_graphs``) or the method's eager one."""
    t, processes = run.config.train, run.processes
    return prepare_step(
        run.method, run.query_rng, t.cuda_graphs, t.compile, run.device, processes.world_size,
        distribute=lambda: run.method.distribute(
            lambda module: processes.wrap(module, run.device), processes.all_true, processes.any_rank
        ),
    )  # fmt: skip


def data_loader(run: Run, step: int) -> DataLoader:
    """Batches from ``step`` on, each process its share of the global batch."""
    t, d, processes = run.config.train, run.config.data, run.processes
    return DataLoader(
        run.dataset,
        batch_size=t.batch_size // processes.world_size,
        sampler=StepSampler(start=step * t.batch_size, rank=processes.rank, world_size=processes.world_size),
        num_workers=d.workers,
        persistent_workers=d.workers > 0,
        prefetch_factor=d.prefetch if d.workers > 0 else None,
        pin_memory=run.device.type == "cuda",
        # Its own generator: creating the iterator must not consume the global RNG (exact resume).
        generator=torch.Generator().manual_seed(t.seed),
        worker_init_fn=own_process_group,
    )


def open_run_dir(run: Run, resume: Path | None, changed: bool, lock: RunLock) -> Path:
    """A new numbered folder (or the resumed run's), locked for this run's writes (a folder has one
    writer; taken before the config is rewritten), with the config as it now is where it ``changed``
    (a resume's changes, or a hand edit the resume overruled); every process learns its path, or
    the lock's refusal."""
    main, fresh = run.processes.main, resume is None
    run_dir, refused = None if fresh else resumed_run_dir(resume), None
    if main:
        try:
            run_dir = new_run_dir(run.config.log.out_dir, run.config.name) if fresh else run_dir
            lock.acquire(run_dir)
            if fresh or changed:
                (run_dir / "config.yaml").write_text(to_yaml(run.config))
        except ConfigError as error:
            refused = str(error)
    run_dir, refused = run.processes.gather((str(run_dir), refused) if main else None)[0]
    if refused:
        raise ConfigError(refused)
    return Path(run_dir)


def run_training(resolved: ResolvedRun, processes: Processes, device: torch.device, lock: RunLock) -> Path:
    """The training loop, in labelled sections: set up, the run folder, the guards, the steps, a failure."""
    # -- set up: the method on its device, where the run starts, the step as it will run --
    config, checkpoint = resolved.config, resolved.checkpoint
    run = set_up(config, processes, device)
    step, resumed, notes = restore(run, checkpoint, resolved.changes)
    training_step = speed_up(run)
    t, log, v, main, method = config.train, config.log, config.validation, processes.main, run.method
    validator = Validator(v, device) if v.every and main else None
    best = BestScore(
        checkpoint.get("best") if checkpoint is not None else None,
        higher_is_better=validator is not None and validator.metric.higher_is_better,
    )
    checkpointer = Checkpointer(config, method, run.schedulers, processes, run.query_rng)
    loader = data_loader(run, step)
    fresh, total = checkpoint is None, run.plan.total_steps
    # -- the run folder, the log, what the user is told before the first step --
    run_dir = open_run_dir(run, resolved.resume, bool(resolved.changes) or resolved.record_stale, lock)
    logger = RunLogger(run_dir, tensorboard=log.tensorboard) if main else None
    if main:
        print(banner(run_dir, step, run.dataset, device, config, processes.world_size, run.plan))
    bar = Progress(total, step, enabled=log.progress and main)
    for kind, note in [("resumed", resumed), *(("note", note) for note in notes)] if main else []:
        if note:
            bar.write(f"note: {note}")
            logger.event(step, kind, note=note)
    # -- the guards: unreadable files, non-finite losses, stop requests, the time budget --
    skipped, nonfinite, guarded = SkippedFiles(), NonFiniteBudget(t.max_nonfinite_steps), SkippedUpdates()

    def report_nonfinite(found: NonFiniteStep) -> None:
        """No weight saw the bad loss (all processes skipped it together): record where it came
        from and go on, or stop when there were too many."""
        if main:
            logger.event(found.step, "non_finite_loss", loss=found.loss, value=found.value, files=found.files)
        bar.write(f"warning: step {found.step}: {found}; files: {', '.join(found.files)}")
        latest = run_dir / "checkpoints" / "latest.pt"
        nonfinite.record(found, str(latest) if latest.exists() else "none yet (nothing was saved before this)")

    def report_skipped() -> None:
        for found in guarded.take():  # the device guard's flags: one read per log line or save
            report_nonfinite(found)

    stops, budget = StopRequests(), TimeBudget(t.max_minutes)
    speed = Throughput(t.batch_size, total, step)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(t.deterministic or was_deterministic)
    saved, in_step = step, False
    batches = Batches(loader)
    # -- the steps: train, log, sample, validate, save, stop --
    try:
        with stops:
            # Each batch is fetched before the processes agree on what comes next, so a file that
            # cannot be read (or a loader worker that died) on any process stops every one of them
            # at the same step, after one checkpoint of it.
            failed = processes.any_flag(step < total and not batches.fetch())
            while step < total and not failed:
                batch = batches.next
                real_a = batch["a"].to(device, run.dtype, non_blocking=True, memory_format=run.layout)
                real_b = batch["b"].to(device, run.dtype, non_blocking=True, memory_format=run.layout)
                for path in skipped.new(batch):
                    bar.write(f"warning: skipped unreadable image {path}")
                    if main:
                        logger.event(step + 1, "skipped_image", file=path, skipped_so_far=len(skipped.seen))
                files = [*batch["path_a"], *batch["path_b"]]
                in_step = True  # from here to the step count, the weights are between two steps
                try:
                    stats = training_step(real_a, real_b)
                except NonFiniteLoss as error:  # unfused optimizers: checked on the host, nothing stepped
                    report_nonfinite(NonFiniteStep(step + 1, error.name, str(error.value), files))
                    stats = None
                else:
                    guarded.add(step + 1, *method.skipped_updates(), files)
                for scheduler in run.schedulers.values():
                    scheduler.step()
                step += 1
                in_step = False
                bar.update()
                if step % log.every == 0 or step == total:
                    report_skipped()
                    if stats is not None:
                        log_scalars(run, logger, bar, step, stats, speed)
                if main and (step % log.sample_every == 0 or step == total):
                    save_samples(run, run_dir, step, real_a, real_b)
                if v.every and (step % v.every == 0 or step == total):
                    if validate_and_keep_best(run, validator, best, logger, step):
                        checkpointer.save(run_dir, step, best.best, "best.pt")
                fetched = step == total or batches.fetch()
                # One agreement per step: a stop request, the wall-clock budget (rank 0's clock
                # decides) and a batch that could not be fetched, on any process.
                stop_now, spent, failed = processes.any_flags(
                    stops.signal is not None, main and budget.spent(), not fetched
                )
                if step % log.checkpoint_every == 0 or step == total or stop_now or spent or failed:
                    report_skipped()
                    checkpointer.save(run_dir, step, best.best, f"step_{step:07d}.pt", "latest.pt")
                    if failed and step > saved and main:
                        bar.write(f"note: saved step {step} before stopping; {resume_hint(run_dir)}")
                    saved = step
                if stop_now:
                    raise Interrupted(run_dir, step)
                if spent and step < total:
                    if main:
                        logger.event(step, "time_budget", minutes=round(budget.minutes(), 2), max_minutes=t.max_minutes)
                        bar.write(
                            f"note: train.max_minutes={t.max_minutes:g} spent at step {step} of {total}; "
                            f"checkpoint saved. Continue with: sesim train --resume {run_dir}"
                        )
                    break
            if failed:
                raise batches.failure(processes)
    # -- a failure: no empty run folder, the last good step saved, one line for out of memory --
    except BaseException as error:
        if fresh and step == 0 and main:  # nothing trained: leave no empty numbered folder behind
            if logger is not None:
                logger.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        elif step > saved and not in_step and processes.world_size == 1 and is_failure(error):
            save_before_failing(checkpointer, run_dir, step, best.best, error, bar)
            saved = step
        if is_out_of_memory(error):
            raise out_of_memory(config, device, step, None if fresh and step == 0 else run_dir, saved) from None
        raise
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        bar.close()
        if logger is not None:
            logger.close()
    return run_dir


def out_of_memory(config: RunConfig, device: torch.device, step: int, run_dir: Path | None, saved: int) -> OutOfMemory:
    """The one line for a step that ran out of memory: where, at which size, what to change, and
    the checkpoint that is intact (a run that never saved leaves no folder)."""
    d, t = config.data, config.train
    size = "whole images" if d.preprocess == "none" else f"{d.crop_size}x{d.crop_size} crops"
    kept = ""
    if run_dir is not None and saved:
        again = "" if t.activation_checkpointing else " --set train.activation_checkpointing=true"
        kept = f"; step {saved} is saved: continue with sesim train --resume {run_dir}{again}"
    return OutOfMemory(
        f"out of memory on {device} at step {step + 1} ({config.method}, batch {t.batch_size} of {size}); "
        f"{memory_fixes(t)} "
        f"(sesim train ... --probe measures what fits){kept}"
    )


def is_failure(error: BaseException) -> bool:
    """An error that ends the run between two steps and leaves the weights good: not a stop the
    loop made itself (signals save on their own; the non-finite stop names its last good one)."""
    return isinstance(error, Exception) and not isinstance(error, TrainingStopped)


def save_before_failing(checkpointer: Checkpointer, run_dir: Path, step: int, best: dict | None, error, bar) -> None:
    """Keep the steps since the last checkpoint (a bad image, a worker's crash, a full disk where it
    allows): save this step and say how to continue; a failed save replaces nothing."""
    try:
        checkpointer.save(run_dir, step, best, f"step_{step:07d}.pt", "latest.pt")
    except Exception as failed:  # the cause may be the disk itself: the previous checkpoint stays
        if str(failed) != str(error):  # not the error line itself once more
            bar.write(f"note: could not save step {step} before stopping ({str(failed).splitlines()[0]})")
        return
    bar.write(
        f"note: saved step {step} before stopping: {run_dir / 'checkpoints' / f'step_{step:07d}.pt'}; "
        + resume_hint(run_dir)
    )


def resume_hint(run_dir: Path) -> str:
    return f"fix the cause, then continue with: sesim train --resume {run_dir}"


def log_scalars(run: Run, logger: RunLogger | None, bar: Progress, step: int, stats: dict, speed: Throughput) -> None:
    """The only place a step's scalars reach the host (averaged over processes), with the
    images/s since the last log line and the minutes the schedule's remaining steps need at it."""
    scalars = {f"loss/{k}": float(v) for k, v in run.processes.mean(stats).items()}
    scalars["lr"] = float(run.schedulers["generator"].get_last_lr()[0])  # a device tensor under CUDA graphs
    scalars.update(speed.tick(step))
    if logger is not None:
        logger.log(step, scalars)
    bar.show(step, scalars)


def save_samples(run: Run, run_dir: Path, step: int, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    """A grid of this batch's real A | fake B | real B, and the run's samples page."""
    with torch.no_grad():
        fake_b = run.method.generator(real_a)
    save_grid(run_dir / "samples" / f"step_{step:07d}.png", [real_a[:4], fake_b[:4], real_b[:4]])
    write_samples_page(run_dir, f"{run.config.name}: {run_dir.name}")


def validate_and_keep_best(run: Run, validator: Validator | None, best: BestScore, logger, step: int) -> bool:
    """Rank 0 scores the held-out split; every process learns whether it improved (then the
    caller saves ``best.pt``, every process taking part)."""
    main, metric = run.processes.main, run.config.validation.metric
    value = validator(run.method.generator) if main else None
    improved = main and best.improves(value)
    value, improved = run.processes.gather((value, improved))[0]
    if main:
        logger.log(step, {f"val/{metric}": value})
    if improved:
        best.update(metric, value, step)
        if main:
            logger.event(step, "best", metric=metric, value=value)
    return improved


__all__ = [
    "DeviceError",
    "Interrupted",
    "ResolvedRun",
    "TrainingStopped",
    "preflight",
    "resolve_run",
    "resume_config",
    "train",
]
