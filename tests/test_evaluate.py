"""``sesim eval``: distribution metrics with a small feature network, paired metrics with known
answers, the offline EfficientNet distance on real maps, and bad input."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from sesim.cli import main
from sesim.errors import WeightsUnavailableError
from sesim.evaluation.distribution import EfficientNetFeatures, distribution_scores, inception_network
from sesim.evaluation.evaluate import evaluate, markdown
from sesim.evaluation.paired import psnr_ssim

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels


class MeanColour(torch.nn.Module):
    """A tiny feature network: per-channel mean and spread of uint8 images."""

    def forward(self, images):
        x = images.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def batches(seed, count, low=0, high=256):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(low, high, (count, 3, 16, 16), dtype=torch.uint8, generator=generator)]


def write_folder(folder, arrays):
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / f"{name}.png")
    return folder


def test_distances_are_zero_for_one_set_and_grow_with_the_shift():
    same = distribution_scores(batches(0, 12), batches(0, 12), MeanColour())
    near = distribution_scores(batches(0, 12), batches(1, 12), MeanColour())
    far = distribution_scores(batches(0, 12), batches(1, 12, low=0, high=100), MeanColour())
    assert same["frechet"] == pytest.approx(0, abs=1e-9) and abs(same["kid_mean"]) < 1e-3
    assert near["frechet"] < far["frechet"] and near["kid_mean"] < far["kid_mean"]
    assert far["kid_subset_size"] == 12  # adapted to the small set (default 1000)


def test_psnr_and_ssim_known_answers():
    target = np.random.default_rng(0).integers(20, 200, (32, 32, 3)).astype(np.uint8)
    shifted = target + 10
    scores = psnr_ssim([shifted], [target])
    assert scores["psnr"] == pytest.approx(20 * np.log10(255 / 10), abs=1e-4)
    assert psnr_ssim([target], [target])["ssim"] == pytest.approx(1.0)
    assert scores["ssim"] < 1.0


def test_evaluate_folders_paired(tmp_path):
    rng = np.random.default_rng(1)
    truth = {f"img{i}": rng.integers(0, 256, (24, 24, 3)).astype(np.uint8) for i in range(4)}
    real = write_folder(tmp_path / "real", truth)
    fake = write_folder(tmp_path / "fake", {name: np.full_like(a, 128) for name, a in truth.items()})
    result = evaluate(real, fake, paired_with=real, metrics=["fid", "paired"], feature_networks={"fid": MeanColour()})
    expected_rmse = np.mean([np.sqrt(((a.astype(float) - 128) ** 2).sum() / 576) for a in truth.values()])
    assert result["paired"]["rmse"] == pytest.approx(expected_rmse)
    assert result["paired"]["pairs"] == 4 and result["fid"] > 0 and result["kid"]["subset_size"] == 4
    identical = evaluate(real, real, paired_with=real, metrics=["paired"])
    assert identical["paired"]["rmse"] == 0 and identical["paired"]["accuracy_5"] == 1


def test_offline_efficientnet_distance_tells_domains_apart(maps_dir):
    """Real features: maps vs maps is closer than aerial photos vs maps."""
    names = sorted(p.name for p in (maps_dir / "trainA").iterdir())[:24]

    def halves(domain):
        images = [np.asarray(Image.open(maps_dir / domain / n).convert("RGB").resize((128, 128))) for n in names]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)

    photos, maps = halves("trainA"), halves("trainB")
    network = EfficientNetFeatures()
    within = distribution_scores([maps[:12]], [maps[12:]], network)["frechet"]
    across = distribution_scores([photos[:12]], [maps[12:]], network)["frechet"]
    assert within < across / 2


def test_inception_weights_are_never_random(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="--inception-weights"):
        inception_network(tmp_path / "missing.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"weights": Payload()}))
    with pytest.raises(WeightsUnavailableError, match="cannot read weights"):
        inception_network(evil)


def test_eval_cli_writes_json_and_markdown(tmp_path, capsys):
    rng = np.random.default_rng(2)
    truth = {f"t{i}": rng.integers(0, 256, (16, 16, 3)).astype(np.uint8) for i in range(3)}
    real = write_folder(tmp_path / "real", truth)
    assert main(["eval", "--real", str(real), "--fake", str(real), "--paired-with", str(real),
                 "--metrics", "paired", "--out", str(tmp_path / "out" / "scores")]) == 0  # fmt: skip
    document = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert document["paired"]["rmse"] == 0
    assert "| RMSE (GcGAN maps protocol, 0-255) | 0.00 |" in (tmp_path / "out" / "scores.md").read_text()
    assert "PSNR" in capsys.readouterr().out


def test_eval_keeps_existing_reports_unless_overwrite(tmp_path, capsys):
    real = write_folder(tmp_path / "real", {"t0": np.full((16, 16, 3), 90, np.uint8)})
    args = ["eval", "--real", str(real), "--fake", str(real), "--paired-with", str(real), "--metrics", "paired"]
    (tmp_path / "notes.md").write_text("the user's own notes")
    assert main([*args, "--out", str(tmp_path / "notes.json")]) == 2  # would write notes.json and notes.md
    assert f"--out: {tmp_path / 'notes.md'} already exists; choose another --out or pass --overwrite" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md", "real"]
    assert main([*args, "--out", str(tmp_path / "eval_v2.1")]) == 0  # a dot that is not a suffix stays
    assert sorted(p.name for p in tmp_path.glob("eval_*")) == ["eval_v2.1.json", "eval_v2.1.md"]
    assert main(args) == 0 and (tmp_path / "eval_real.json").is_file()  # the default: eval_FAKE beside --fake
    assert main(args) == 2 and "eval_real.json already exists (and 1 more)" in capsys.readouterr().err
    (tmp_path / "eval_real.json").write_text("{}")
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((tmp_path / "eval_real.json").read_text())["paired"]["rmse"] == 0


@pytest.mark.parametrize(
    "case,message",
    [
        ("empty", "no images"),
        ("count", "2 images for 3 translations"),
        ("unreadable", "cannot read image"),
        ("fid_offline", "Inception weights not found"),
        ("metric", "unknown"),
    ],
)
def test_eval_bad_input(tmp_path, capsys, case, message):
    rng = np.random.default_rng(3)
    arrays = {f"t{i}": rng.integers(0, 256, (16, 16, 3)).astype(np.uint8) for i in range(3)}
    real = write_folder(tmp_path / "real", arrays)
    args = ["eval", "--real", str(real), "--fake", str(real), "--metrics", "paired", "--paired-with", str(real)]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args[4] = str(tmp_path / "empty")
    elif case == "count":
        args[-1] = str(write_folder(tmp_path / "two", dict(list(arrays.items())[:2])))
    elif case == "unreadable":
        (real / "t9.png").write_bytes(b"not an image")
    elif case == "fid_offline":
        args[6] = "paired,fid"
    else:
        args[6] = "paired,inception"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("sesim: error:") and message in err and len(err.strip().splitlines()) == 1
    assert main(["--debug", *args]) == 2  # the traceback, and still a user error's exit code
    assert "Traceback" in capsys.readouterr().err


def test_lpips_diversity_groups_outputs_per_input(tmp_path):
    from sesim.evaluation.diversity import group_by_input

    rng = np.random.default_rng(4)
    outputs = {f"{name}_s{k}": rng.integers(0, 256, (16, 16, 3)).astype(np.uint8) for name in "ab" for k in range(3)}
    outputs["c_s0"] = outputs["a_s0"]  # a single output: no pair, not counted
    fake = write_folder(tmp_path / "fake", outputs)
    assert sorted(group_by_input(sorted(fake.iterdir()))) == ["a", "b"]

    def mean_abs(x, y):  # a stand-in for LPIPS: any distance between batches
        return (x - y).abs().mean()

    result = evaluate(fake, fake, metrics=["lpips_diversity"], lpips_score=mean_abs)["lpips_diversity"]
    assert result["inputs"] == 2 and result["lpips_diversity"] > 0.2
    same = write_folder(tmp_path / "same", {f"a_s{k}": outputs["a_s0"] for k in range(3)})
    assert (
        evaluate(same, same, metrics=["lpips_diversity"], lpips_score=mean_abs)["lpips_diversity"]["lpips_diversity"]
        == 0
    )


def test_lpips_needs_its_backbone_file(tmp_path):
    from sesim.evaluation.diversity import lpips_scorer

    with pytest.raises(WeightsUnavailableError, match="LPIPS: weights file not found"):
        lpips_scorer("alex", tmp_path / "missing.pth")
    wrong = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsUnavailableError, match=r"is not torchvision's alexnet"):
        lpips_scorer("alex", wrong)


def test_eval_checks_pairs_before_extracting_features_and_warns_on_small_sets(tmp_path, capsys, monkeypatch):
    import sesim.evaluation.evaluate as evaluate_module

    rng = np.random.default_rng(5)
    images = {f"t{i}": rng.integers(0, 256, (16, 16, 3)).astype(np.uint8) for i in range(3)}
    real, fake = write_folder(tmp_path / "real", images), write_folder(tmp_path / "fake", images)
    truth = write_folder(tmp_path / "truth", dict(list(images.items())[:2]))

    def never(*args, **kwargs):
        raise AssertionError("features were extracted before the pairing was checked")

    monkeypatch.setattr(evaluate_module, "EfficientNetFeatures", never)
    assert main(["eval", "--real", str(real), "--fake", str(fake), "--paired-with", str(truth)]) == 2
    assert "2 images for 3 translations" in capsys.readouterr().err

    result = evaluate(real, fake, metrics=["fd_efficientnet"], feature_networks={"fd_efficientnet": MeanColour()})
    assert result["fd_efficientnet"] >= 0 and "sampling noise" in result["warnings"][0]
    assert "warning:" in markdown(result)


def test_an_input_given_for_a_metric_left_out_is_an_error_not_ignored(tmp_path, capsys, monkeypatch):
    import sesim.evaluation.evaluate as evaluate_module

    images = {f"t{i}": np.full((16, 16, 3), 10 * i, np.uint8) for i in range(2)}
    real = write_folder(tmp_path / "real", images)
    monkeypatch.setattr(evaluate_module, "EfficientNetFeatures", MeanColour)
    given = [("--paired-with", str(real), "paired"), ("--inception-weights", "pt_inception.pth", "fid"),
             ("--lpips-weights", "alexnet.pth", "lpips_diversity")]  # fmt: skip
    for flag, value, metric in given:
        command = ["eval", "--real", str(real), "--fake", str(real), "--metrics", "fd_efficientnet", flag, value]
        assert main([*command, "--out", str(tmp_path / "e")]) == 2
        assert f"{flag} is used by the {metric} metric only" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
    # left to the default, a given input adds its metric (LPIPS weights: the diversity score)
    scored = []
    monkeypatch.setattr(evaluate_module, "lpips_scorer", lambda net, weights: scored.append(weights) or _mean_abs)
    diverse = write_folder(tmp_path / "diverse", {f"a_s{k}": np.full((16, 16, 3), 50 * k, np.uint8) for k in range(2)})
    result = evaluate(diverse, diverse, lpips_weights="alexnet.pth")
    assert scored == ["alexnet.pth"] and result["lpips_diversity"]["inputs"] == 1


def _mean_abs(x, y):
    return (x - y).abs().mean()


def test_an_unwritable_report_is_refused_before_the_scoring(tmp_path, capsys, monkeypatch):
    import sesim.evaluation.evaluate as evaluation

    real = tmp_path / "real"
    real.mkdir()
    Image.new("RGB", (16, 16)).save(real / "a.png")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("scored before the output was checked"))
    out = tmp_path / "notes.txt" / "report"
    assert main(["eval", "--real", str(real), "--fake", str(real), "--out", str(out), "--device", "cpu"]) == 2
    assert "notes.txt is a file" in capsys.readouterr().err
