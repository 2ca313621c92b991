"""Presets load and validate; overrides work; mistakes give clear one-line errors."""

import pytest
from pydantic import BaseModel

from sesim.config import load_config
from sesim.errors import ConfigError
from sesim.presets import preset_names


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    from sesim.methods import METHODS

    config = load_config(name)
    assert config.method in METHODS and config.name == name


def test_presets_carry_the_paper_defaults():
    fsesim, lsesim = load_config("fsesim"), load_config("lsesim")
    for config in (fsesim, lsesim):
        assert config.train.lr == 1e-4 and config.train.betas == (0.5, 0.999)
        assert (config.train.epochs, config.train.decay_epochs, config.train.batch_size) == (200, 200, 1)
        assert config.loss.taps == ["relu3_1", "relu4_1", "relu4_3"] and config.loss.mode == "cos"
        assert config.weights.structure == 10 and config.train.pool_size == 50
        assert (config.model.generator.ngf, config.model.generator.blocks) == (64, 9)
    assert (fsesim.loss.window, fsesim.loss.learned) == (64, False)
    assert (lsesim.loss.window, lsesim.loss.learned) == (64, True)  # the authors' train_sc.sh: --patch_size 64
    assert config.train.schedule == "epoch"  # lr decay once per epoch, as their code


def test_overrides_are_typed():
    config = load_config("fsesim", ["train.batch_size=4", "loss.taps=[relu2_1]", "loss.window=null"])
    assert config.train.batch_size == 4 and config.loss.taps == ["relu2_1"] and config.loss.window is None


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["train.batch_sise=4"], r"--set train\.batch_sise=4: unknown key; did you mean train\.batch_size\?"),
        (["train.batch_size=four"], r"--set train\.batch_size=four: .*integer"),
        (["train.batch_size=0"], r"--set train\.batch_size=0: .*greater than or equal to 1"),
        (["trian.batch_size=4"], r"--set trian\.batch_size=4: unknown key; did you mean train\?"),
        (["loss.mode=l2"], r"loss\.mode"),
        (["data.crop_size=300"], "larger than load_size"),
        (["batch_size"], "expected KEY=VALUE"),
        (["train.lr.x=1"], "not a section"),
        (["data.folder_a=x"], "folder_a and folder_b go together"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config("fsesim", overrides)
    assert "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(broken))
    with pytest.raises(ConfigError, match=r"is a folder, not a YAML file; .* --data"):
        load_config(str(tmp_path))
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    with pytest.raises(ConfigError, match="is not a YAML text file"):
        load_config(str(image))


@pytest.mark.parametrize("preset", preset_names())
def test_presets_spell_out_every_option(preset):
    """A preset is documentation: every config key appears in it, section by section."""
    import yaml

    from sesim.config import RunConfig
    from sesim.presets import PRESETS_DIR

    raw = yaml.safe_load((PRESETS_DIR / f"{preset}.yaml").read_text())

    def missing(model_class, section, prefix=""):
        for key, field in model_class.model_fields.items():
            if key not in section:
                yield prefix + key
            elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from missing(field.annotation, section[key], f"{prefix}{key}.")

    assert list(missing(RunConfig, raw)) == []


def test_config_reference_is_in_sync_and_complete():
    """docs/config.md is generated from the models (python -m sesim.config > docs/config.md)."""
    from pathlib import Path

    from sesim.config import reference_markdown

    text = reference_markdown()
    assert (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 70 and all(not line.rstrip().endswith("|  |") for line in rows)  # every key has a meaning
    assert "| `log.keep_checkpoints` |" in text and "| `train.precision` |" in text


def test_registry_values_are_checked_with_their_choices_named():
    from sesim.backbones import BACKBONES
    from sesim.config import OneOf, RunConfig
    from sesim.methods import METHODS

    with pytest.raises(ConfigError, match=r"model\.generator\.kind=resnt: unknown 'resnt'; did you mean resnet\?"):
        load_config("fsesim", ["model.generator.kind=resnt"])
    with pytest.raises(ConfigError, match="choose from " + ", ".join(BACKBONES)):
        load_config("fsesim", ["loss.backbone=resnet50"])
    fields = {"method": RunConfig.model_fields["method"]}
    (check,) = [m.func for m in fields["method"].metadata if isinstance(getattr(m, "func", None), OneOf)]
    assert check.choices() == list(METHODS)


def test_adam_betas_outside_zero_one_are_a_config_error_not_a_traceback():
    with pytest.raises(ConfigError, match=r"train\.betas"):
        load_config("fsesim", ["train.betas=[2,3]"])
    assert load_config("fsesim", ["train.betas=[0,0.99]"]).train.betas == (0.0, 0.99)


def test_a_rule_across_keys_names_the_flag_that_broke_it_not_the_first_of_its_section():
    with pytest.raises(ConfigError, match=r"^--set data\.crop_size=512: crop_size 512 is larger than load_size"):
        load_config("fsesim", ["data.workers=0", "data.crop_size=512"])
    with pytest.raises(ConfigError, match=r"^--set data\.load_size=100: crop_size 256 is larger"):
        load_config("fsesim", ["data.workers=0", "data.load_size=100"])


def test_the_schema_names_every_registered_component_and_no_other():
    """The config lists names only (it imports no component); each list is its registry's keys."""
    from sesim.backbones import BACKBONES
    from sesim.config import NAMES
    from sesim.data.transforms import PREPROCESS
    from sesim.evaluation.held_out import HELD_OUT_METRICS
    from sesim.losses.spatial import COMPARISONS
    from sesim.methods import METHODS
    from sesim.methods.structure import STRUCTURE_TERMS
    from sesim.networks import DISCRIMINATORS, GENERATORS

    registries = {
        "methods": METHODS, "generators": GENERATORS, "discriminators": DISCRIMINATORS, "backbones": BACKBONES,
        "structure_terms": STRUCTURE_TERMS, "comparisons": COMPARISONS, "preprocess": PREPROCESS,
        "held_out_metrics": HELD_OUT_METRICS,
    }  # fmt: skip
    assert set(NAMES) == set(registries)
    for name, registry in registries.items():
        assert NAMES[name] == tuple(registry), name


def test_the_schema_knows_each_backbones_default_taps():
    """Setting only loss.backbone takes that backbone's taps: the schema's table is the backbones'."""
    from sesim.backbones import DEFAULT_TAPS
    from sesim.config import BACKBONE_TAPS

    assert BACKBONE_TAPS == DEFAULT_TAPS


def test_derived_presets_are_their_base_with_the_overrides_they_name():
    """10 presets say which preset and overrides they come from; each is exactly that (regenerate
    them with ``python -m sesim.config --presets``), so a drift from the base is a failing test."""
    from sesim.config import derived_preset
    from sesim.presets import PRESETS_DIR

    derived = {path.name: derived_preset(path) for path in sorted(PRESETS_DIR.glob("*.yaml"))}
    assert sorted(name for name, text in derived.items() if text is None) == ["demo.yaml", "fsesim.yaml", "lsesim.yaml"]
    for name, text in derived.items():
        if text is not None:
            assert (PRESETS_DIR / name).read_text() == text, f"{name}: run python -m sesim.config --presets"


def test_a_preset_that_drifts_from_its_base_is_caught(tmp_path):
    from sesim.config import derived_preset
    from sesim.presets import PRESETS_DIR

    drifted = tmp_path / "ablation-l1.yaml"
    drifted.write_text((PRESETS_DIR / "ablation-l1.yaml").read_text().replace("window: 64", "window: 9"))
    assert drifted.read_text() != (PRESETS_DIR / "ablation-l1.yaml").read_text()  # the drift is there
    assert derived_preset(drifted) != drifted.read_text()
