"""Every method and structure term: CUT / FastCUT (PatchNCE), CycleGAN, the GAN alone, perceptual,
the ablation presets. Two CPU steps on tiny nets, the expected log keys, translate from the
checkpoint; plus the pieces (PatchNCE, encoder taps, projector, flip equivariance)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sesim.cli import main
from sesim.config import load_config
from sesim.errors import ConfigError
from sesim.inference import load_generator
from sesim.losses import sample_query_ids
from sesim.losses.patch_nce import patch_nce_loss
from sesim.methods import METHODS, CycleGAN, OneSidedTranslation
from sesim.networks import ResnetGenerator
from sesim.presets import preset_names
from sesim.training.loop import train
from tests.helpers import tiny_config, tiny_data

SMALL_NCE = "loss.patchnce.taps=[input,down1,block1]"
KEYS = {
    "cut": {"loss/structure", "loss/identity_structure", "loss/g_gan", "loss/d"},
    "fastcut": {"loss/structure", "loss/g_gan", "loss/d"},
    "cyclegan": {"loss/cycle", "loss/identity_l1", "loss/g_gan", "loss/d"},
    "gan-only": {"loss/g_gan", "loss/d", "loss/structure"},
    "perceptual": {"loss/structure", "loss/g_gan", "loss/d"},
    "ablation-l1": {"loss/structure"},
    "ablation-local": {"loss/structure"},
    "ablation-no-augment": {"loss/heads", "loss/structure"},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("preset", sorted(KEYS))
def test_preset_trains_two_steps_and_translates(tmp_path, data, preset):
    extra = [SMALL_NCE, "loss.window=4"] if preset == "ablation-local" else [SMALL_NCE]
    run_dir = train(tiny_config(preset, data, tmp_path, "train.max_steps=2", *extra))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert KEYS[preset] <= set(records[-1])
    assert all(torch.isfinite(torch.tensor(v)) for r in records for k, v in r.items() if k not in ("step", "time"))
    if preset == "gan-only":
        assert records[-1]["loss/structure"] == 0
    out = tmp_path / "out.png"
    assert main(["translate", str(run_dir), str(data / "testA" / "0000.png"), str(out), "--device", "cpu"]) == 0
    assert out.is_file()


def test_every_preset_loads_and_names_a_method():
    for name in preset_names():
        config = load_config(name)
        assert config.method in METHODS


def test_patch_nce_prefers_the_same_position():
    torch.manual_seed(0)
    key = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1)
    aligned = patch_nce_loss(key, key, 0.07)
    shuffled = patch_nce_loss(key[:, torch.randperm(16)], key, 0.07)
    assert aligned < 0.1 < shuffled
    with pytest.raises(ValueError, match="alike"):
        patch_nce_loss(key, key[:, :4])


def test_generator_taps_are_names():
    generator = ResnetGenerator(ngf=8, blocks=2)
    features = generator.encode(torch.zeros(1, 3, 16, 16), ["down1", "block2"])
    assert features["down1"].shape == (1, 16, 8, 8) and features["block2"].shape == (1, 32, 4, 4)
    with pytest.raises(ValueError, match="valid taps: input, stem, down1"):
        generator.encode(torch.zeros(1, 3, 16, 16), ["block9"])


def test_cut_projector_is_built_eagerly_and_trained_with_the_generator():
    config = tiny_config("cut", Path("unused"), Path("unused"), SMALL_NCE)
    method = OneSidedTranslation(config.model.generator, config.model.discriminator, config.loss, config.weights)
    projector = method.structure.projector
    optimized = {id(p) for group in method.optimizers["generator"].param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in projector.parameters())
    assert "projector" in method.trained_modules()
    before = [p.detach().clone() for p in projector.parameters()]
    real = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    method.training_step(real[0], real[1])
    assert any(not torch.equal(a, b) for a, b in zip(before, projector.parameters(), strict=True))


@pytest.mark.numerics
def test_fastcut_flips_as_cut_does():
    """CUT's flip equivariance: on about half the steps G translates the mirrored input, the
    discriminator sees G(flip(A)) as it is, and PatchNCE mirrors the translation's encoder
    features back onto A's positions (not the translation itself)."""
    config = load_config("fastcut", [SMALL_NCE, "model.generator.ngf=8", "model.generator.blocks=1"])
    method = OneSidedTranslation(config.model.generator, config.model.discriminator, config.loss, config.weights)
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    seen = []
    for seed in range(8):
        torch.manual_seed(seed)
        with torch.no_grad():
            fake, _, flipped = method.translate_for_training(images, None)
            assert torch.allclose(fake, method.generator(images.flip(3) if flipped else images))
        seen.append(flipped)
    assert any(seen) and not all(seen)  # about half the steps mirror

    term, generator = method.structure, method.generator
    with torch.no_grad():
        fake = generator(images.flip(3))
        ours = term(images, fake, torch.Generator().manual_seed(0), True)
        keys = generator.encode(images, term.taps)
        queries = {tap: q.flip(3) for tap, q in generator.encode(fake, term.taps).items()}
        rng = torch.Generator().manual_seed(0)
        ids = {tap: sample_query_ids(*f.shape[-2:], term.num_patches, rng) for tap, f in keys.items()}
        k, q = term.projector(term._patches(keys, ids)), term.projector(term._patches(queries, ids))
        by_hand = torch.stack([patch_nce_loss(q[t], k[t], term.temperature) for t in term.taps]).mean()
        image_level = term(images, fake.flip(3), torch.Generator().manual_seed(0), False)
    assert torch.allclose(ours, by_hand)
    assert not torch.allclose(ours, image_level)  # mirroring the image instead is not the same


def test_cyclegan_generator_step_leaves_the_discriminators_untouched():
    config = load_config("cyclegan", ["model.generator.ngf=8", "model.generator.blocks=1", "model.discriminator.ndf=8",
                                      "model.discriminator.layers=2", "train.pool_size=0"])  # fmt: skip
    method = CycleGAN(config.model.generator, config.model.discriminator, config.loss, config.weights)
    real_a, real_b = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    seen = {}
    original = method.optimizers["generator"].step

    def record(*args, **kwargs):
        seen["d_grads"] = [p.grad for m in (method.discriminator, method.discriminator_a) for p in m.parameters()]
        return original(*args, **kwargs)

    method.optimizers["generator"].step = record
    stats = method.training_step(real_a, real_b)
    assert all(g is None for g in seen["d_grads"])
    assert {"cycle", "identity_l1", "g", "d"} <= set(stats)


@pytest.mark.parametrize(
    "preset,overrides,fragment",
    [
        ("cyclegan", ["loss.structure=sesim", "loss.learned=true", "weights.structure=1"], r"cyclegan: loss\.struct"),
        ("cyclegan", ["loss.structure=patchnce"], r"cyclegan: loss\.structure"),
        ("multimodal", ["model.generator.kind=resnet"], r"multimodal: model\.generator\.kind must be munit"),
        ("sinsesim", ["loss.learned=true"], r"sinsesim: learned heads"),
    ],
)
def test_each_method_checks_its_settings_where_a_run_is_resolved(tmp_path, preset, overrides, fragment):
    """A method's own rules (``check``) refuse a run when it is resolved, before a network is built."""
    from sesim.methods import METHODS
    from sesim.training.resolve import resolve_run

    config = load_config(preset, overrides)
    with pytest.raises(ConfigError, match=fragment):
        METHODS[config.method].check(config)
    with pytest.raises(ConfigError, match=fragment):
        resolve_run(preset, data=tmp_path, overrides=overrides)
    METHODS[config.method].check(load_config(preset))  # the preset itself passes


def test_translate_uses_the_a_to_b_generator_and_b_to_a_on_request(tmp_path, data, capsys):
    from PIL import Image

    from sesim.data.images import load_rgb, to_image, to_tensor
    from sesim.inference.export import read_metadata, run_exported
    from sesim.inference.translate import translate_tensor

    run_dir = train(tiny_config("cyclegan", data, tmp_path, "train.max_steps=1"))
    generator, checkpoint = load_generator(run_dir)
    assert checkpoint["config"]["method"] == "cyclegan" and isinstance(generator, ResnetGenerator)
    reverse, _ = load_generator(run_dir, direction="BtoA")
    weights = checkpoint["networks"]["generator_ba"]
    assert all(torch.equal(value, weights[key]) for key, value in reverse.state_dict().items())
    source = data / "testB" / "0000.png"
    image = to_tensor(load_rgb(source))[None]
    assert main(["translate", str(run_dir), str(source), str(tmp_path / "a.png"), "--direction", "BtoA"]) == 0
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "a.png")), np.asarray(to_image(translate_tensor(reverse, image)[0]))
    )
    assert main(["export", str(run_dir), str(tmp_path / "ba.pt"), "--direction", "BtoA"]) == 0
    assert torch.allclose(run_exported(tmp_path / "ba.pt", image), translate_tensor(reverse, image), atol=1e-4)
    assert read_metadata(tmp_path / "ba.pt")["translates"].startswith("B to A")

    one_way = train(tiny_config("fsesim", data, tmp_path / "f", "train.max_steps=1"))
    capsys.readouterr()
    assert main(["translate", str(one_way), str(source), str(tmp_path / "b.png"), "--direction", "BtoA"]) == 2
    assert "learned A->B only" in capsys.readouterr().err and not (tmp_path / "b.png").exists()


def test_sinsesim_trains_on_one_image_pair_and_translates_the_whole_painting(tmp_path):
    """Single-image translation: zoomed crops of one painting and one photo, then the full-size
    painting translated at once (odd size: padded inside)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    for domain, size in (("trainA", (90, 70)), ("trainB", (80, 64))):
        (tmp_path / domain).mkdir()
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)).save(tmp_path / domain / "x.png")
    config = load_config("sinsesim", [
        f"data.root={tmp_path}", f"log.out_dir={tmp_path / 'runs'}", "data.load_size=48", "data.crop_size=32",
        "data.workers=0", "model.generator.ngf=1", "model.generator.blocks=1", "model.discriminator.ndf=1",
        "model.discriminator.layers=2", "loss.backbone_weights=random", "loss.taps=[relu1_2,relu2_1]",
        "train.batch_size=4", "train.max_steps=2", "train.device=cpu", "log.progress=false", "log.tensorboard=false",
    ])  # fmt: skip
    run_dir = train(config)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if "loss/g" in line]
    assert {"loss/d", "loss/r1", "loss/g_gan", "loss/structure"} <= set(records[-1])
    out = tmp_path / "painting.png"
    assert main(["translate", str(run_dir), str(tmp_path / "trainA" / "x.png"), str(out), "--device", "cpu"]) == 0
    with Image.open(out) as translated:
        assert translated.size == (90, 70)


def test_zoom_and_crop_draws_different_scales():
    from PIL import Image

    from sesim.data.transforms import augment

    image = Image.new("RGB", (200, 100))
    for seed in range(4):
        out = augment(image, torch.Generator().manual_seed(seed), "zoom_and_crop", 100, 32, True, (0.5, 1.0))
        assert out.size == (32, 32)
    # the scale is drawn: the share of the image a crop covers varies with the seed
    gradient = Image.linear_gradient("L").resize((200, 100)).convert("RGB")
    spans = []
    for seed in range(6):
        crop = np.asarray(
            augment(gradient, torch.Generator().manual_seed(seed), "zoom_and_crop", 100, 32, False, (0.4, 1.0))
        )
        spans.append(int(crop[..., 0].max()) - int(crop[..., 0].min()))
    assert len(set(spans)) > 2


def test_multimodal_trains_and_translates_with_k_styles(tmp_path, data, capsys):
    from PIL import Image

    run_dir = train(tiny_config("multimodal", data, tmp_path, "train.max_steps=2", "model.generator.blocks=1"))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if "loss/g" in line]
    expected = {"loss/style_code", "loss/content_code", "loss/reconstruction", "loss/structure", "loss/d"}
    assert expected <= set(records[-1])
    source = data / "testA" / "0000.png"

    def outputs(folder, *extra):
        assert main(["translate", str(run_dir), str(source), str(folder), "--device", "cpu", *extra]) == 0
        return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.iterdir())}

    first = outputs(tmp_path / "k3", "--num-styles", "3")
    assert sorted(first) == ["0000_s0.png", "0000_s1.png", "0000_s2.png"]
    assert not np.array_equal(first["0000_s0.png"], first["0000_s1.png"])  # K different outputs
    again = outputs(tmp_path / "k3-again", "--num-styles", "3")
    assert all(np.array_equal(first[name], again[name]) for name in first)  # same codes, same outputs
    reference = outputs(tmp_path / "ref", "--style-from", str(data / "testB" / "0001.png"))
    assert list(reference) == ["0000.png"]  # one style: the name asked for, no _s0
    named = tmp_path / "named.png"
    assert main(["translate", str(run_dir), str(source), str(named), "--style-from", str(source)]) == 0
    assert named.is_file() and not (tmp_path / "named_s0.png").exists()

    # The export takes a style code as its second input and matches PyTorch on drawn codes.
    from sesim.data.images import load_rgb, to_tensor
    from sesim.inference.export import read_metadata, run_exported
    from sesim.inference.translate import translate_tensor

    generator, _ = load_generator(run_dir)
    image = to_tensor(load_rgb(source))[None].expand(2, -1, -1, -1)
    codes = torch.randn(2, generator.style_dim, generator=torch.Generator().manual_seed(3))
    for name in ("m.onnx", "m.pt"):
        assert main(["export", str(run_dir), str(tmp_path / name)]) == 0
        exported = run_exported(tmp_path / name, image, codes)
        for k in range(2):
            assert torch.allclose(exported[k], translate_tensor(generator, image[:1], style=codes[k])[0], atol=1e-4)
        assert not torch.allclose(exported[0], exported[1], atol=1e-3)
        assert read_metadata(tmp_path / name)["inputs"] == "images, style"

    fsesim = train(tiny_config("fsesim", data, tmp_path / "f", "train.max_steps=1"))
    assert main(["translate", str(fsesim), str(source), str(tmp_path / "x"), "--num-styles", "2"]) == 2
    assert "need a multimodal checkpoint" in capsys.readouterr().err


@pytest.mark.numerics
def test_multimodal_same_code_same_output_different_code_different_output():
    from sesim.networks.munit import MultimodalGenerator

    generator = MultimodalGenerator(ngf=4, blocks=1).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    code = torch.randn(1, 8).expand(2, -1)
    with torch.no_grad():
        assert torch.equal(generator(images, code), generator(images, code))
        assert not torch.allclose(generator(images, code), generator(images, torch.randn(2, 8)))
        assert torch.equal(generator(images), generator(images, torch.zeros(2, 8)))


@pytest.mark.numerics
def test_a_reference_style_is_the_mean_of_its_training_size_views_at_any_image_size():
    """``--style-from``: the style encoder sees crop_size views of the image at the training
    scale (never the whole image, so a huge reference fits in memory), and the code is their mean."""
    from PIL import Image

    from sesim.config import DataConfig
    from sesim.data.images import to_tensor
    from sesim.data.transforms import training_scale
    from sesim.inference.style import reference_style, view_boxes
    from sesim.networks.munit import MultimodalGenerator

    assert view_boxes(40, 16, 16) == [(0, 0, 16, 16), (16, 0, 32, 16), (24, 0, 40, 16)]  # last view moved back in
    generator = MultimodalGenerator(ngf=4, blocks=1).eval()
    seen = []
    generator.style_encoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    native = DataConfig(preprocess="crop", load_size=16, crop_size=16)
    code = reference_style(generator, Image.fromarray(pixels), native, "cpu")
    whole = to_tensor(Image.fromarray(pixels))
    views = torch.stack([whole[:, top : top + 16, left : left + 16] for top in (0, 16) for left in (0, 16, 32)])
    with torch.no_grad():
        expected = generator.encode_style(views).mean(0, keepdim=True)
    torch.testing.assert_close(code, expected, rtol=1e-5, atol=1e-6)
    assert code.shape == (1, 8) and {tuple(shape[2:]) for shape in seen} == {(16, 16)}

    # the paper's geometry: resized to load_size square first, whatever the reference's size
    paper = DataConfig(preprocess="resize_and_crop", load_size=36, crop_size=32)
    assert training_scale(Image.new("RGB", (3000, 2000)), paper.preprocess, 36, 32).size == (36, 36)
    seen.clear()
    big = Image.fromarray(np.random.default_rng(1).integers(0, 256, (400, 600, 3), dtype=np.uint8))
    reference_style(generator, big, DataConfig(preprocess="crop", load_size=32, crop_size=32), "cpu")
    assert max(max(shape[2:]) for shape in seen) == 32 and max(shape[0] for shape in seen) <= 16
    assert sum(shape[0] for shape in seen) == 13 * 19  # ceil(400 / 32) x ceil(600 / 32) views
    assert reference_style(generator.double(), big, paper, "cpu").dtype == torch.float64


def test_style_flags_are_not_silently_ignored(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["translate", "run", "in.png", "out.png", "--num-styles", "2", "--style-from", "day.jpg"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["translate", "run", "in.png", "out.png", "--seed", "3"]) == 2  # a seed of nothing
    assert "--seed seeds the codes of --num-styles" in capsys.readouterr().err


@pytest.mark.parametrize("antialias", [True, False])
def test_cut_taps_are_cuts_layers(antialias):
    """CUT's nce_layers 0, 4, 8, 12, 16: the padded input, the raw convolution of each
    down-sampling stage (before its norm and blur-pool: full and half resolution with blur-pool),
    the first and fifth residual blocks."""
    generator = ResnetGenerator(ngf=8, blocks=5, antialias=antialias)
    taps = ["input", "down1_conv", "down2_conv", "block1", "block5"]
    shapes = {tap: tuple(f.shape[1:]) for tap, f in generator.encode(torch.zeros(1, 3, 32, 32), taps).items()}
    full, half = (32, 16) if antialias else (16, 8)  # strided convolutions halve in the conv itself
    assert shapes == {"input": (3, 38, 38), "down1_conv": (16, full, full), "down2_conv": (32, half, half),
                      "block1": (32, 8, 8), "block5": (32, 8, 8)}  # fmt: skip
    assert [generator.taps[t][0] for t in taps] == ([0, 4, 8, 12, 16] if antialias else [0, 4, 7, 10, 14])
    assert load_config("cut").loss.patchnce.taps == taps and load_config("fastcut").loss.patchnce.taps == taps


@pytest.mark.parametrize("preset", preset_names())
def test_every_presets_patchnce_taps_exist_in_its_generator(preset):
    """A preset's patchnce section must fit its own generator, so ``--set loss.structure=patchnce``
    works on it (the demo's 3-block generator has no block5)."""
    from sesim.networks import build_generator

    config = load_config(preset)
    if config.model.generator.kind != "resnet":
        pytest.skip("PatchNCE taps the resnet generator's encoder")
    generator = build_generator(config.model.generator)
    assert generator.tap_channels(tuple(config.loss.patchnce.taps))
