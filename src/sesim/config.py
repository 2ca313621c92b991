"""Typed, validated run configuration (pydantic), YAML presets and ``--set`` overrides.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored option.
Builders receive only their own section (``config.loss``, ``config.model.generator``, ...).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sesim.errors import ConfigError

# The names a config value may take, by the registry that builds them. The schema holds the
# names only and imports no component; tests/test_config.py ties each tuple to its registry (the
# dict next to the code: ``sesim.methods.METHODS``, ``sesim.networks.GENERATORS`` ...), so a
# component added there and not here (or the reverse) fails a test.
NAMES: dict[str, tuple[str, ...]] = {
    "methods": ("one_sided", "cyclegan", "sinsesim", "multimodal"),
    "generators": ("resnet", "stylegan2", "munit"),
    "discriminators": ("patchgan", "stylegan2"),
    "backbones": ("vgg16", "efficientnet_lite0"),
    "structure_terms": ("sesim", "patchnce", "perceptual", "none"),
    "comparisons": ("cos", "l1"),
    "preprocess": ("resize_and_crop", "crop", "zoom_and_crop", "none"),
    "held_out_metrics": ("rmse", "psnr", "fd_efficientnet"),
}
# Each backbone's default taps (``sesim.backbones.DEFAULT_TAPS``, tied by the same test): a run that
# sets only ``loss.backbone`` gets that backbone's taps.
BACKBONE_TAPS: dict[str, tuple[str, ...]] = {
    "vgg16": ("relu3_1", "relu4_1", "relu4_3"),
    "efficientnet_lite0": ("stage2", "stage3", "stage5"),
}


class OneOf:
    """Validator of a value that must be one of the names :data:`NAMES` lists for a registry; the
    error lists them (and the nearest one)."""

    def __init__(self, registry: str) -> None:
        self.registry = registry

    def choices(self) -> list[str]:
        return list(NAMES[self.registry])

    def __call__(self, value: str) -> str:
        choices = self.choices()
        if value not in choices:
            near = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ValueError(f"unknown {value!r}; {hint}choose from {', '.join(choices)}")
        return value


def one_of(registry: str):
    """A ``str`` field whose value must be a key of the named registry."""
    return Annotated[str, AfterValidator(OneOf(registry))]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorConfig(Section):
    kind: one_of("generators") = Field(
        "resnet",
        description="generator architecture: resnet (the paper's), stylegan2 (single image), munit (multi-modal)",
    )
    ngf: int = Field(64, ge=1, description="width of the generator's first layer (64 in the paper)")
    blocks: int = Field(9, ge=0, description="residual blocks at quarter resolution (9 in the paper)")
    antialias: bool = Field(
        True, description="blur-pool down- and up-sampling (the paper's); false: strided convolutions"
    )
    style_dim: int = Field(8, ge=1, description="munit only: length of the style code")


class DiscriminatorConfig(Section):
    kind: one_of("discriminators") = Field(
        "patchgan", description="patchgan (70x70 PatchGAN, LSGAN) or stylegan2 (single image)"
    )
    ndf: int = Field(64, ge=1, description="width of the discriminator's first layer (64 in the paper)")
    layers: int = Field(3, ge=1, description="stride-2 layers of the PatchGAN (3: 70x70 patches)")
    antialias: bool = Field(True, description="blur-pool down-sampling in the discriminator")


class ModelConfig(Section):
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()


class PatchNCEConfig(Section):
    """CUT's PatchNCE term (``loss.structure: patchnce``): taps of the generator's encoder."""

    taps: list[str] = Field(
        ["input", "down1_conv", "down2_conv", "block1", "block5"],
        description=(
            "generator encoder taps PatchNCE contrasts (input, stem, down1_conv, down1, down2_conv, down2, "
            "block1 ...; CUT's: input, down1_conv, down2_conv, block1, block5)"
        ),
    )
    num_patches: int = Field(256, ge=1, description="patches sampled per tap and image")
    temperature: float = Field(0.07, gt=0, description="InfoNCE temperature")
    projector_dim: int = Field(256, ge=1, description="width of the 2-layer MLP projector per tap")


class LossConfig(Section):
    """The structure term, the part of the generator's objective that keeps the input's content:
    ``structure`` picks its kind (``weights.structure`` its weight); for ``sesim``, FSeSim
    (``learned: false``) or LSeSim (``learned: true``) on the backbone taps; ``perceptual`` uses
    the same backbone taps; ``patchnce`` the generator's own (``loss.patchnce``)."""

    structure: one_of("structure_terms") = Field(
        "sesim",
        description="the structure term: sesim (the paper), patchnce (CUT), perceptual (feature L1) or none",
    )
    flip_equivariance: bool = Field(
        False, description="FastCUT: G sees a flipped input half the time, output flipped back"
    )
    backbone: one_of("backbones") = Field(
        "vgg16",
        description=(
            "fixed feature extractor: vgg16 (the paper's) or efficientnet_lite0 (offline; its default taps "
            "follow when only the backbone is set)"
        ),
    )
    backbone_weights: str = Field(
        "imagenet", description="imagenet (hub cache or download), a weights file path, or random (tests only)"
    )
    taps: list[str] = Field(
        ["relu3_1", "relu4_1", "relu4_3"],
        description=(
            "named backbone layers the similarity maps are taken at (vgg16: relu1_1 ... relu5_3; "
            "efficientnet_lite0: stem, stage1 ... stage7)"
        ),
    )
    window: int | None = Field(
        64, ge=1, description="local window side of the similarity maps; null or at least the map size: global"
    )
    normalize: bool = Field(
        False, description="false: the authors' maps (centred, tanh(s / 10)) with SmoothL1; true: cosine maps with L1"
    )
    mode: one_of("comparisons") = Field(
        "cos", description="cos: 1 - cosine between map rows; l1: elementwise on the rescaled maps"
    )
    num_queries: int = Field(256, ge=1, description="query positions per tap and call")
    learned: bool = Field(
        False, description="LSeSim: learned heads on the taps, trained contrastively before each D step"
    )
    augment: bool = Field(True, description="LSeSim heads: add colour-jittered views to the contrastive objective")
    temperature: float = Field(0.07, gt=0, description="LSeSim heads: temperature of the contrastive objective")
    patchnce: PatchNCEConfig = PatchNCEConfig()

    @field_validator("taps")
    @classmethod
    def _taps_not_empty(cls, taps: list[str]) -> list[str]:
        if not taps:
            raise ValueError("at least one tap is needed")
        return taps


class WeightsConfig(Section):
    """Loss weights of the generator objective ``gan * L_GAN + structure * L_structure + identity terms``
    (+ ``cycle * L_cycle`` for CycleGAN). ``structure`` weighs whichever ``loss.structure`` is chosen."""

    gan: float = Field(1.0, ge=0, description="adversarial term")
    structure: float = Field(10.0, ge=0, description="the structure term chosen by loss.structure (10 in the paper)")
    identity_l1: float = Field(0.0, ge=0, description="L1 between G(B) and B")
    identity_structure: float = Field(
        0.0, ge=0, description="the structure term between B and G(B) (CUT's identity NCE)"
    )
    cycle: float = Field(0.0, ge=0, description="CycleGAN's cycle-consistency weight (10 in its paper)")
    r1: float = Field(0.0, ge=0, description="R1 gradient penalty gamma (single-image translation: 1.0)")
    style_code: float = Field(0.0, ge=0, description="multimodal: |E_s(G(a, s)) - s|")
    content_code: float = Field(0.0, ge=0, description="multimodal: |E_c(G(a, s)) - E_c(a)|")
    reconstruction: float = Field(0.0, ge=0, description="multimodal: |G(E_c(b), E_s(b)) - b|")


class DataConfig(Section):
    root: str | None = Field(None, description="a folder with trainA/ and trainB/ (set by --data)")
    folder_a: str | None = Field(
        None, description="or any two folders of images: domain A (give folder_b too; they take precedence over root)"
    )
    folder_b: str | None = Field(None, description="domain B, with folder_a")
    load_size: int = Field(286, ge=4, description="images are resized to this (short side for zoom) before cropping")
    crop_size: int = Field(256, ge=4, description="training crop side (a multiple of 4)")
    preprocess: one_of("preprocess") = Field(
        "resize_and_crop", description="resize_and_crop (the paper's), crop, zoom_and_crop (single image) or none"
    )
    zoom: tuple[float, float] = Field((0.5, 1.0), description="zoom_and_crop: short side = load_size x U(zoom)")
    flip: bool = Field(True, description="random horizontal flips")
    workers: int = Field(2, ge=0, description="data-loader processes (0: load in the training process)")
    direction: Literal["AtoB", "BtoA"] = Field("AtoB", description="AtoB, or BtoA to swap the domains")
    on_bad_image: Literal["fail", "skip"] = Field("fail", description="skip: warn, count in the log, use the next file")
    cache_images: bool = Field(False, description="keep decoded images in memory (small datasets; per worker)")
    prefetch: int = Field(2, ge=1, description="batches each worker loads ahead")

    @model_validator(mode="after")
    def _crop_fits(self) -> DataConfig:
        if (self.folder_a is None) != (self.folder_b is None):
            raise ValueError("folder_a and folder_b go together: give both, or use root")
        if self.preprocess == "resize_and_crop" and self.crop_size > self.load_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than load_size {self.load_size}")
        if self.crop_size % 4:
            raise ValueError(f"crop_size must be a multiple of 4 (the generator halves twice), got {self.crop_size}")
        return self


class TrainConfig(Section):
    batch_size: int = Field(1, ge=1, description="global batch (split over processes under torchrun)")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate of every network")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.5, 0.999), description="Adam betas, each in [0, 1)"
    )
    epochs: int = Field(200, ge=0, description="epochs at the constant learning rate")
    decay_epochs: int = Field(200, ge=0, description="epochs of linear decay to zero after them")
    schedule: Literal["epoch", "step"] = Field(
        "epoch",
        description=(
            "learning-rate decay after train.epochs: epoch (the original code's: down once per epoch by "
            "1/(decay_epochs + 1), never 0) or step (linear every step, 0 at the last)"
        ),
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description=(
            "stop after this many steps, the epoch schedule compressed to fit (its constant/decay proportion kept)"
        ),
    )
    pool_size: int = Field(50, ge=0, description="image pool of past fakes the discriminator sees (0: none)")
    seed: int = Field(0, description="seed of data order, crops, query positions and initialisation")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda or cuda:N")
    deterministic: bool = Field(
        False, description="deterministic algorithms during training (slower on CUDA; exact reruns)"
    )
    nan_guard: bool = Field(
        True,
        description=(
            "skip the update of a NaN/Inf loss (with fused Adam checked on the device, read when logging: no host "
            "sync in the step)"
        ),
    )
    precision: Literal["auto", "fp32", "bf16", "fp64"] = Field(
        "auto",
        description=(
            "auto: bf16 autocast on CUDA, fp32 on CPU; fp64: float64 weights and arithmetic, a slow "
            "reference run whose rounding no kernel choice can amplify (tests compare processes and layouts "
            "with it)"
        ),
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description=(
            "NHWC layout; auto: off (contiguous was faster on an H200 at batch 1 and 8, and on CPUs: "
            "instance norm and reflection padding run NCHW kernels)"
        ),
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", description="torch.compile mode"
    )
    cuda_graphs: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "the whole training step as one CUDA graph, replayed each step; auto: on CUDA for the one-sided "
            "methods in one process (not FastCUT's flip), off elsewhere; on: an error where it cannot be"
        ),
    )

    activation_checkpointing: bool = Field(
        False,
        description=(
            "recompute the generators' and discriminators' activations in the backward pass instead of keeping "
            "them: larger crops and batches fit, each step computes those forwards twice (same gradients)"
        ),
    )

    @field_validator("compile", "cuda_graphs", mode="before")
    @classmethod
    def _off_is_a_word(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` / ``on`` (``--set train.compile=off``) as a boolean."""
        return {False: "off", True: "on"}.get(value, value) if isinstance(value, bool) else value

    max_nonfinite_steps: int = Field(10, ge=0, description="then stop, with the last good checkpoint intact")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget: save and stop cleanly once spent (resume continues); null: none"
    )
    init_from: str | None = Field(
        None, description="fine-tune: start from this run's (or checkpoint's) weights, fresh optimizers"
    )


class ValidationConfig(Section):
    """Scores on a held-out split while training (never the test set); keeps ``checkpoints/best.pt``."""

    every: int = Field(0, ge=0, description="steps between validations; 0: off")
    folder_a: str | None = Field(None, description="held-out source images")
    folder_b: str | None = Field(
        None, description="their ground truth (same file names) or, for fd_efficientnet, target images"
    )
    metric: one_of("held_out_metrics") = Field(
        "fd_efficientnet",
        description="rmse or psnr against ground truth of the same name, or fd_efficientnet against target images",
    )
    max_images: int = Field(50, ge=2, description="held-out images scored (the first N by name)")
    size: int = Field(256, ge=8, description="images are resized to size x size (a multiple of 4)")

    @model_validator(mode="after")
    def _complete(self) -> ValidationConfig:
        if self.every and (self.folder_a is None or self.folder_b is None):
            raise ValueError("validation.every > 0 needs validation.folder_a and validation.folder_b")
        if self.size % 4:
            raise ValueError(f"validation.size must be a multiple of 4, got {self.size}")
        return self


class LogConfig(Section):
    out_dir: str = Field("runs", description="where numbered run folders are made")
    every: int = Field(50, ge=1, description="steps between logged scalars (the only host sync of the losses)")
    sample_every: int = Field(1000, ge=1, description="steps between sample grids")
    checkpoint_every: int = Field(5000, ge=1, description="steps between checkpoints (step_N.pt and latest.pt)")
    keep_checkpoints: int | None = Field(
        5, ge=1, description="step checkpoints kept (the newest N; best.pt and latest.pt always); null: keep all"
    )
    tensorboard: bool = Field(True, description="TensorBoard scalars beside log.jsonl")
    progress: bool = Field(True, description="a progress bar on a terminal; in a log file, one line per logged step")


class RunConfig(Section):
    method: one_of("methods") = Field(
        "one_sided",
        description=(
            "the algorithm: one_sided (one generator, any structure term: FSeSim, LSeSim, CUT, GAN alone ...), "
            "cyclegan, sinsesim, multimodal"
        ),
    )
    name: str = Field("sesim", description="the run's name (run folders are NNN-name)")
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    weights: WeightsConfig = WeightsConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()
    log: LogConfig = LogConfig()


def _read_yaml(path: Path) -> dict[str, Any]:
    from sesim.presets import preset_names

    if path.is_dir():
        raise ConfigError(
            f"config {path} is a folder, not a YAML file; give a preset or a config file "
            f"(a dataset folder goes to --data, a run folder to --resume or --init-from)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (presets: {', '.join(preset_names())})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config {path} is not a YAML text file; give a preset or a config file "
            f"(a checkpoint goes to --resume or --init-from)"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def resolve_config_path(name_or_path: str) -> Path:
    """A preset name (``fsesim``) or a YAML file path."""
    from sesim.presets import PRESETS_DIR, preset_names

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"unknown config {name_or_path!r}: not a file and not a preset ({', '.join(preset_names())})")


class Update(NamedTuple):
    """One setting made on top of a preset or a stored config: the dotted ``key``, its ``value``
    (typed; validated with the whole config) and the ``flag`` that made it, which an error about
    the setting names (``--set train.batch_size=0``, ``--data DIR``)."""

    key: str
    value: Any
    flag: str


def parse_set(assignment: str) -> Update:
    """A ``--set KEY=VALUE`` as an :class:`Update`, the value read as YAML (an empty one is null)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.batch_size=4")
    dotted, raw = assignment.split("=", 1)
    if not all(dotted.strip().split(".")):
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return Update(dotted.strip(), value, f"--set {assignment}")


def updates(overrides: Iterable[str | Update]) -> list[Update]:
    """``--set`` texts and :class:`Update` s, as updates."""
    return [item if isinstance(item, Update) else parse_set(item) for item in overrides]


def apply_updates(data: dict[str, Any], changes: Iterable[Update]) -> dict[str, Any]:
    """Apply updates to a nested config dict, in place (and return it). An update of
    ``loss.backbone`` with none of ``loss.taps`` takes that backbone's default taps."""
    changes = list(changes)
    for change in changes:
        *sections, last = change.key.split(".")
        node = data
        for key in sections:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{change.flag}: {key!r} is not a section")
        node[last] = change.value
    keys = {change.key for change in changes}
    loss = data.get("loss")
    if "loss.backbone" in keys and "loss.taps" not in keys and isinstance(loss, dict):
        if loss.get("backbone") in BACKBONE_TAPS:
            loss["taps"] = list(BACKBONE_TAPS[loss["backbone"]])
    return data


def _section_fields(model: Any, location: tuple) -> list[str]:
    """The valid keys of the section at ``location`` (a pydantic error location) below ``model``."""
    for part in location:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


# Keys renamed since earlier versions: stored configs are migrated (``migrate_stored``); a YAML
# file or --set with an old name is told the new one.
RENAMED = {
    "weights.spatial": "weights.structure",
    "weights.identity_spatial": "weights.identity_structure",
    "weights.style": "weights.style_code",
    "weights.content": "weights.content_code",
}
# Values renamed: the one-sided translator was ``method: sesim``.
RENAMED_VALUES = {("method", "sesim"): "one_sided"}


def migrate_stored(data: dict[str, Any]) -> list[str]:
    """Bring a config stored by an earlier SeSim to today's key names, in place; returns what changed.

    Checkpoints written before ``train.schedule`` existed decayed every step, so they get ``step``.
    """
    changes = []
    for old, new in RENAMED.items():
        (section, key), (_, new_key) = old.split("."), new.split(".")
        node = data.get(section)
        if isinstance(node, dict) and key in node and new_key not in node:
            node[new_key] = node.pop(key)
            changes.append(f"{old} -> {new}")
    for (key, old), new in RENAMED_VALUES.items():
        if data.get(key) == old:
            data[key] = new
            changes.append(f"{key}: {old} -> {new}")
    train = data.get("train")
    if isinstance(train, dict) and "schedule" not in train:
        train["schedule"] = "step"
        changes.append("train.schedule: step (the per-step decay it was trained with)")
    return changes


def validate_section(
    model: type[Section] | type[RunConfig],
    data: Any,
    source: str,
    prefix: str = "",
    changes: Iterable[Update] = (),
):
    """Validate ``data`` as ``model`` (a whole run config, or one section at ``prefix``); the first
    problem becomes a one-line ``ConfigError``. A problem with a key an update set names that
    update's flag; an unknown key suggests the nearest (or its new name, if it was renamed)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(first["loc"])
        where = ".".join([*([prefix] if prefix else []), *map(str, location)]) or "(top level)"
        if first["type"] == "extra_forbidden":
            valid = _section_fields(model, location[:-1])
            near = difflib.get_close_matches(str(location[-1]), valid, n=1)
            parent = where.rsplit(".", 1)[0] if "." in where else ""
            if where in RENAMED:
                message = f"renamed; use {RENAMED[where]}"
            elif near:
                message = f"unknown key; did you mean {'.'.join([*([parent] if parent else []), near[0]])}?"
            else:
                message = f"unknown key; valid keys here: {', '.join(valid)}"
        else:
            message = first["msg"].removeprefix("Value error, ")
            value = first.get("input")
            renamed = RENAMED_VALUES.get((where, value)) if isinstance(value, str) else None
            if renamed:
                message = f"{first['input']!r} is now called {renamed!r}"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        for change in _blamed(list(changes), where, message, rule=first["type"] != "extra_forbidden"):
            raise ConfigError(f"{change.flag}: {message}{more}") from None
        raise ConfigError(f"{source}: {where}: {message}{more}") from None


def _blamed(changes: list[Update], where: str, message: str, rule: bool) -> list[Update]:
    """The updates a problem at ``where`` is about: the one of that key (or of a section that holds
    it); for a rule across a section's keys (``crop_size`` above ``load_size``), only updates whose
    key the message names, never just any update of the section."""
    exact = [c for c in changes if where == c.key or where.startswith(c.key + ".")]
    if exact:
        return exact
    inside = [c for c in changes if c.key.startswith(where + ".")]
    if not rule:  # an unknown key below ``where``: the update that gave it
        return inside
    return [c for c in inside if re.search(rf"\b{re.escape(c.key.rsplit('.', 1)[-1])}\b", message)]


def stored_config(checkpoint: dict[str, Any], source: str) -> RunConfig:
    """The run config a loaded ``checkpoint`` carries, validated (``source`` names the file)."""
    return validate(checkpoint.get("config", {}), f"{source} (stored config)")


def validate(data: dict[str, Any], source: str, changes: Iterable[Update] = ()) -> RunConfig:
    """Validate a whole run config (see :func:`validate_section`)."""
    return validate_section(RunConfig, data, source, "", changes)


# What ``sesim train --resume RUN --set ...`` may change: how long and how the run goes on, where
# its data is, how it logs. Everything else (networks, losses, method, batch, optimizer) shaped
# the weights and optimizer states in the checkpoint, so changing it would not be that run.
RESUMABLE = (
    "train.max_steps", "train.max_minutes", "train.epochs", "train.decay_epochs", "train.schedule", "train.device",
    "train.nan_guard", "train.activation_checkpointing",
    "train.max_nonfinite_steps", "train.compile", "train.cuda_graphs", "train.deterministic", "train.channels_last",
    "data.root", "data.folder_a", "data.folder_b", "data.workers", "data.prefetch", "data.cache_images",
    "data.on_bad_image", "validation.every", "validation.folder_a", "validation.folder_b", "validation.max_images",
    "log.every", "log.sample_every", "log.checkpoint_every", "log.tensorboard", "log.progress",
)  # fmt: skip


def check_resumable(change: Update) -> None:
    """A resume may make ``change`` (its key is in :data:`RESUMABLE`), or a ``ConfigError`` names its flag."""
    if change.key not in RESUMABLE:
        raise ConfigError(
            f"{change.flag}: {change.key} cannot change when resuming (the checkpoint's weights and optimizer "
            f"states were made with the run's value); start a new run, or fine-tune from this one with "
            f"--init-from RUN_DIR. On resume these can change: {', '.join(RESUMABLE)}"
        )


def absolute_paths(config: RunConfig) -> RunConfig:
    """The config with every folder made absolute, so a run resumes from any working directory."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().absolute())

    data = config.data.model_copy(
        update={key: absolute(getattr(config.data, key)) for key in ("root", "folder_a", "folder_b")}
    )
    validation = config.validation.model_copy(
        update={key: absolute(getattr(config.validation, key)) for key in ("folder_a", "folder_b")}
    )
    train = config.train.model_copy(update={"init_from": absolute(config.train.init_from)})
    return config.model_copy(update={"data": data, "validation": validation, "train": train})


def load_config(name_or_path: str, overrides: Iterable[str | Update] = ()) -> RunConfig:
    """Read a preset or YAML file, apply ``--set`` texts or :class:`Update` s, validate."""
    path = resolve_config_path(name_or_path)
    changes = updates(overrides)
    return validate(apply_updates(_read_yaml(path), changes), str(path), changes)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def reference_markdown() -> str:
    """Every config key with its type, default and meaning, as Markdown (``docs/config.md``)."""
    out = [
        "# Config reference",
        "",
        "Every key of a run's config, with its type, default and meaning. Presets (`sesim presets`) set",
        "each one; `--set SECTION.KEY=VALUE` overrides any of them. Generated from `sesim/config.py`",
        "by `python -m sesim.config > docs/config.md` (a test keeps the two in sync).",
        "",
    ]

    def section(model: type[BaseModel], prefix: str) -> None:
        rows, nested = [], []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append((name, annotation))
                continue
            default = json.dumps(field.default) if field.default is not None else "null"
            choice = next((m.func for m in field.metadata if isinstance(getattr(m, "func", None), OneOf)), None)
            kind = " \\| ".join(choice.choices()) if choice else _type_name(annotation).replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | `{kind}` | `{default}` | {field.description or ''} |")
        if rows:
            title = prefix.rstrip(".") or "top level"
            doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
            out.extend([f"## {title}", "", *([doc, ""] if doc and model is not RunConfig else [])])
            out.extend(["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for name, child in nested:
            section(child, f"{prefix}{name}.")

    section(RunConfig, "")
    return "\n".join(out)


_GENERATED = re.compile(r"^# Generated from (\S+)\.yaml with: (.*)$", re.M)


def derived_preset(path: Path) -> str | None:
    """The text a derived preset must have: its leading comment lines (which name the base and the
    overrides: ``# Generated from BASE.yaml with: KEY=VALUE ...``) and the base with those
    overrides, resolved and spelt out whole. ``None`` for a preset written by hand."""
    text = path.read_text()
    found = _GENERATED.search(text)
    if found is None:
        return None
    lines = text.splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    return "\n".join(header) + "\n" + to_yaml(load_config(found.group(1), found.group(2).split()))


def write_derived_presets() -> list[Path]:
    """Regenerate every derived preset from its base (``python -m sesim.config --presets``)."""
    from sesim.presets import PRESETS_DIR

    written = []
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        text = derived_preset(path)
        if text is not None and text != path.read_text():
            path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--presets"]:
        for path in write_derived_presets():
            print(f"wrote {path}")
    else:
        print(reference_markdown(), end="")
