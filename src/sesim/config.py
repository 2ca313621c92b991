"""Typed, validated run configuration (pydantic), YAML presets and ``--set`` overrides.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored option.
Builders receive only their own section (``config.loss``, ``config.model.generator``, ...).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sesim.presets import PRESETS_DIR, preset_names


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the key or file."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorConfig(Section):
    kind: Literal["resnet", "stylegan2", "munit"] = "resnet"  # stylegan2: single image; munit: multi-modal
    ngf: int = Field(64, ge=1)
    blocks: int = Field(9, ge=0)
    antialias: bool = True
    style_dim: int = Field(8, ge=1)  # munit only: length of the style code


class DiscriminatorConfig(Section):
    kind: Literal["patchgan", "stylegan2"] = "patchgan"
    ndf: int = Field(64, ge=1)
    layers: int = Field(3, ge=1)
    antialias: bool = True


class ModelConfig(Section):
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()


class PatchNCEConfig(Section):
    """CUT's PatchNCE term (``loss.structure: patchnce``): taps of the generator's encoder."""

    taps: list[str] = ["input", "down1", "down2", "block1", "block5"]
    num_patches: int = Field(256, ge=1)
    temperature: float = Field(0.07, gt=0)
    projector_dim: int = Field(256, ge=1)


class LossConfig(Section):
    """The structure term: ``structure`` picks it; for ``sesim``, FSeSim (``learned: false``) or
    LSeSim (``learned: true``) on the backbone taps; ``perceptual`` uses the same backbone taps."""

    structure: Literal["sesim", "patchnce", "perceptual", "none"] = "sesim"
    flip_equivariance: bool = False  # FastCUT: G sees a flipped input half the time, output flipped back
    backbone: Literal["vgg16", "efficientnet_lite0"] = "vgg16"
    backbone_weights: str = "imagenet"
    taps: list[str] = ["relu3_1", "relu4_1", "relu4_3"]
    window: int | None = Field(64, ge=1)
    normalize: bool = False
    mode: Literal["cos", "l1"] = "cos"
    num_queries: int = Field(256, ge=1)
    learned: bool = False
    augment: bool = True
    temperature: float = Field(0.07, gt=0)
    patchnce: PatchNCEConfig = PatchNCEConfig()

    @field_validator("taps")
    @classmethod
    def _taps_not_empty(cls, taps: list[str]) -> list[str]:
        if not taps:
            raise ValueError("at least one tap is needed")
        return taps


class WeightsConfig(Section):
    """Loss weights of the generator objective ``gan * L_GAN + spatial * L_content + identity terms``
    (+ ``cycle * L_cycle`` for CycleGAN). ``spatial`` weighs whichever ``loss.structure`` is chosen."""

    gan: float = Field(1.0, ge=0)
    spatial: float = Field(10.0, ge=0)
    identity_l1: float = Field(0.0, ge=0)
    identity_spatial: float = Field(0.0, ge=0)
    cycle: float = Field(0.0, ge=0)  # CycleGAN's cycle-consistency weight (10 in its paper)
    r1: float = Field(0.0, ge=0)  # R1 gradient penalty gamma (single-image translation: 1.0)
    style: float = Field(0.0, ge=0)  # multimodal: |E_s(G(a, s)) - s|
    content: float = Field(0.0, ge=0)  # multimodal: |E_c(G(a, s)) - E_c(a)|
    reconstruction: float = Field(0.0, ge=0)  # multimodal: |G(E_c(b), E_s(b)) - b|


class DataConfig(Section):
    root: str | None = None  # a folder with trainA/ and trainB/ ...
    folder_a: str | None = None  # ... or any two folders (both given: they take precedence)
    folder_b: str | None = None
    load_size: int = Field(286, ge=4)
    crop_size: int = Field(256, ge=4)
    preprocess: Literal["resize_and_crop", "crop", "zoom_and_crop", "none"] = "resize_and_crop"
    zoom: tuple[float, float] = (0.5, 1.0)  # zoom_and_crop: short side = load_size x U(zoom)
    flip: bool = True
    workers: int = Field(2, ge=0)
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    on_bad_image: Literal["fail", "skip"] = "fail"  # skip: warn, count in the log, use the next file
    cache_images: bool = False  # keep decoded images in memory (small datasets; per worker)
    prefetch: int = Field(2, ge=1)  # batches each worker loads ahead

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
    batch_size: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    epochs: int = Field(200, ge=0)
    decay_epochs: int = Field(200, ge=0)
    max_steps: int | None = Field(None, ge=1)
    pool_size: int = Field(50, ge=0)
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    nan_guard: bool = True  # skip the update of a NaN/Inf loss (one host sync per optimizer step)
    # auto: bf16 autocast on CUDA, fp32 on CPU; fp64: float64 weights and arithmetic, a slow reference
    # run whose rounding no kernel choice can amplify (tests compare processes and layouts with it)
    precision: Literal["auto", "fp32", "bf16", "fp64"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"  # NHWC layout; auto: on CUDA (no gain measured on CPU)
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"  # torch.compile mode
    max_nonfinite_steps: int = Field(10, ge=0)  # then stop, with the last good checkpoint intact
    init_from: str | None = None  # fine-tune: start from this run's (or checkpoint's) weights, fresh optimizers


class ValidationConfig(Section):
    """Scores on a held-out split while training (never the test set); keeps ``checkpoints/best.pt``."""

    every: int = Field(0, ge=0)  # steps between validations; 0: off
    folder_a: str | None = None  # held-out source images
    folder_b: str | None = None  # their ground truth (same file names) or, for fd_efficientnet, target images
    metric: Literal["rmse", "psnr", "fd_efficientnet"] = "fd_efficientnet"
    max_images: int = Field(50, ge=2)
    size: int = Field(256, ge=8)  # images are resized to size x size (a multiple of 4)

    @model_validator(mode="after")
    def _complete(self) -> ValidationConfig:
        if self.every and (self.folder_a is None or self.folder_b is None):
            raise ValueError("validation.every > 0 needs validation.folder_a and validation.folder_b")
        if self.size % 4:
            raise ValueError(f"validation.size must be a multiple of 4, got {self.size}")
        return self


class LogConfig(Section):
    out_dir: str = "runs"
    every: int = Field(50, ge=1)
    sample_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(5000, ge=1)
    tensorboard: bool = True
    progress: bool = True


class RunConfig(Section):
    method: Literal["sesim", "cyclegan", "sinsesim", "multimodal"] = "sesim"
    name: str = "sesim"
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    weights: WeightsConfig = WeightsConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()
    log: LogConfig = LogConfig()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (presets: {', '.join(preset_names())})") from None
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
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"unknown config {name_or_path!r}: not a file and not a preset ({', '.join(preset_names())})")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to a nested dict, in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.batch_size=4")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {key!r} is not a section")
    node[keys[-1]] = value


def _section_fields(location: tuple) -> list[str]:
    """The valid keys of the section at ``location`` (a pydantic error location)."""
    model: Any = RunConfig
    for part in location:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def validate(data: dict[str, Any], source: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Validate a nested dict; the first problem becomes a one-line ``ConfigError``. A problem
    with a key given by an override names that ``--set``; an unknown key suggests the nearest."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(first["loc"])
        where = ".".join(str(part) for part in location) or "(top level)"
        if first["type"] == "extra_forbidden":
            valid = _section_fields(location[:-1])
            near = difflib.get_close_matches(str(location[-1]), valid, n=1)
            message = (
                f"unknown key; did you mean {'.'.join([*map(str, location[:-1]), near[0]])}?"
                if near
                else (f"unknown key; valid keys here: {', '.join(valid)}")
            )
        else:
            message = first["msg"]
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        for assignment in overrides:
            key = assignment.split("=", 1)[0].strip()
            if where == key or where.startswith(key + ".") or key.startswith(where + "."):
                raise ConfigError(f"--set {assignment}: {message}{more}") from None
        raise ConfigError(f"{source}: {where}: {message}{more}") from None


# What ``sesim train --resume RUN --set ...`` may change: how long and how the run goes on, where
# its data is, how it logs. Everything else (networks, losses, method, batch, optimizer) shaped
# the weights and optimizer states in the checkpoint, so changing it would not be that run.
RESUMABLE = (
    "train.max_steps", "train.epochs", "train.decay_epochs", "train.device", "train.nan_guard",
    "train.max_nonfinite_steps", "train.compile", "train.deterministic", "train.channels_last",
    "data.root", "data.folder_a", "data.folder_b", "data.workers", "data.prefetch", "data.cache_images",
    "data.on_bad_image", "validation.every", "validation.folder_a", "validation.folder_b", "validation.max_images",
    "log.every", "log.sample_every", "log.checkpoint_every", "log.tensorboard", "log.progress",
)  # fmt: skip


def check_resumable(assignment: str) -> None:
    key = assignment.split("=", 1)[0].strip()
    if key not in RESUMABLE:
        raise ConfigError(
            f"--set {assignment}: {key} cannot change when resuming (the checkpoint's weights and optimizer "
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


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a preset or YAML file, apply ``--set`` overrides, validate."""
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    for assignment in overrides:
        apply_override(data, assignment)
    keys = {assignment.split("=", 1)[0].strip() for assignment in overrides}
    if "loss.backbone" in keys and "loss.taps" not in keys:  # one key switches backbone and its taps
        from sesim.backbones import DEFAULT_TAPS

        backbone = data.get("loss", {}).get("backbone")
        if backbone in DEFAULT_TAPS:
            data["loss"]["taps"] = list(DEFAULT_TAPS[backbone])
    return validate(data, str(path), overrides)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
