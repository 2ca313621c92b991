"""The sesim command as a user runs it: dry runs, errors with exit code 2, translate, download."""

import argparse
import http.server
import io
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from sesim.cli import main
from sesim.data.download import download
from sesim.errors import ConfigError, DataError
from sesim.training.loop import train
from tests.helpers import TINY, tiny_config, tiny_data


def test_dry_run_prints_resolved_config_and_checks_it(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    flags = [arg for item in [*TINY, f"log.out_dir={tmp_path / 'runs'}"] for arg in ("--set", item)]
    assert main(["train", "lsesim", "--data", str(data), *flags, "--set", "train.batch_size=4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 4" in out and f"root: {data}" in out and "learned: true" in out
    assert "# ok: data: 6 A images" in out and "nothing trained" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--set", "loss.taps=[relu9_9]"], "relu9_9"),
        (["--set", "loss.backbone_weights=imagenet"], "--set loss.backbone=efficientnet_lite0"),
        (["--set", "train.device=cuda:3"], "no CUDA device"),
        (["--set", "validation.every=5", "--set", "validation.folder_a=/no/val", "--set", "validation.folder_b=/no/v"],
         "folder not found: /no/val"),
    ],
)  # fmt: skip
def test_dry_run_catches_what_a_real_start_would(tmp_path, capsys, monkeypatch, extra, fragment):
    import sesim.backbones.vgg as vgg

    monkeypatch.setattr(vgg, "cached_or_download", _offline)
    data = tiny_data(tmp_path / "data")
    flags = [arg for item in TINY for arg in ("--set", item)]
    assert main(["train", "fsesim", "--data", str(data), *flags, *extra, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def _cut_short(data):
    path = sorted((data / "trainA").iterdir())[1]
    path.write_bytes(path.read_bytes()[:200])  # the header reads; the pixels end early
    return path


def _not_an_image(data):
    path = sorted((data / "trainB").iterdir())[2]
    path.write_bytes(b"not an image")
    return path


def _mixed_sizes(data):
    path = sorted((data / "trainA").iterdir())[0]
    Image.new("RGB", (24, 40)).save(path)
    return path


def _unpaired_validation(data):
    (data / "testB" / sorted(p.name for p in (data / "testB").iterdir())[0]).rename(data / "testB" / "other.png")
    return data / "testB"


# What a real start rejects, a dry run rejects too (the same check, the same line, exit 2, no run
# folder). A file cut short after its header reads: --dry-run=full finds it; training meets it
# when it decodes it (here within the 4 steps: 8 samples of 6 images), after saving the steps before.
TWINS = [
    (_not_an_image, [], "--dry-run", "cannot read image"),
    (_cut_short, ["train.max_steps=4"], "--dry-run=full", "cannot read image"),
    (_mixed_sizes, ["data.preprocess=none"], "--dry-run", "data.preprocess=none trains on whole images"),
    (_unpaired_validation, ["validation.every=2", "validation.metric=rmse"], "--dry-run", "no ground truth named"),
]


@pytest.mark.parametrize("spoil,extra,dry_run,fragment", TWINS, ids=[twin[0].__name__ for twin in TWINS])
def test_dry_run_is_the_real_starts_twin(tmp_path, capsys, spoil, extra, dry_run, fragment):
    data = tiny_data(tmp_path / "data")
    settings = [*TINY, f"log.out_dir={tmp_path / 'runs'}", *extra]
    settings += (
        [f"validation.folder_a={data / 'testA'}", f"validation.folder_b={data / 'testB'}"]
        if extra[:1] == ["validation.every=2"]
        else []
    )
    flags = [arg for item in settings for arg in ("--set", item)]
    command = ["train", "fsesim", "--data", str(data), "--set", "train.max_steps=2", *flags]
    assert main([*command, dry_run]) == 0  # passes before the file is spoilt
    spoil(data)
    capsys.readouterr()
    assert main([*command, dry_run]) == 2
    dry = capsys.readouterr().err
    assert fragment in dry and dry.count("\n") == 1, dry
    assert main(command) == 2
    real = capsys.readouterr().err
    assert fragment in real.splitlines()[-1], real
    if spoil is not _cut_short:  # refused before the start: one line, no run folder
        assert real.count("\n") == 1 and not list((tmp_path / "runs").glob("*")), real


def test_dry_run_notes_what_skip_mode_will_skip(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    bad = _not_an_image(data)
    flags = [arg for item in [*TINY, "data.on_bad_image=skip"] for arg in ("--set", item)]
    assert main(["train", "fsesim", "--data", str(data), *flags, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"domain B: 1 unreadable image(s) will be skipped: cannot read image {bad}" in out


def _offline(url, file_name, what, hint):
    from sesim.errors import WeightsUnavailableError

    raise WeightsUnavailableError(f"{what}: no local weights and the download failed (URLError); {hint}")


def test_one_key_switches_the_backbone_with_its_taps():
    from sesim.config import load_config

    config = load_config("fsesim", ["loss.backbone=efficientnet_lite0"])
    assert config.loss.taps == ["stage2", "stage3", "stage5"]
    assert load_config("fsesim", ["loss.backbone=efficientnet_lite0", "loss.taps=[stage4]"]).loss.taps == ["stage4"]


def test_flags_reach_the_config_as_typed_values_not_yaml(tmp_path, monkeypatch):
    """--data and --init-from are paths, whatever YAML would make of their text (null, a number)."""
    from sesim.config import Update
    from sesim.training.resolve import resolve_run

    monkeypatch.chdir(tmp_path)
    run = resolve_run("fsesim", data="null", init_from="1e3", overrides=["train.batch_size=2"])
    assert run.config.data.root == str(tmp_path / "null") and run.config.train.init_from == str(tmp_path / "1e3")
    assert run.config.train.batch_size == 2 and run.checkpoint is None and run.step == 0
    typed = resolve_run("fsesim", data="d", overrides=[Update("train.betas", (0.0, 0.9), "the caller")])
    assert typed.config.train.betas == (0.0, 0.9)
    with pytest.raises(ConfigError, match=r"^the caller: "):
        resolve_run("fsesim", data="d", overrides=[Update("train.betas", (2, 3), "the caller")])


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "fsesim", "--set", "train.nope=1", "--dry-run"], "--set train.nope=1: unknown key"),
        (["train", "fsesim", "--set", "train.batch_sise=4", "--dry-run"], "did you mean train.batch_size?"),
        (["train", "fsesim"], "--data DIR is required"),
        (["train", "fsesim", "--data", "/nonexistent/x"], "folder not found"),
        (["train", "nopreset", "--data", "x"], "unknown config 'nopreset'"),
        (["train", "fsesim", "--data", "a", "--set", "data.root=b"], "--data and --set data.root=b both set data.root"),
        (["train", "--resume", "run", "--init-from", "r", "--set", "train.init_from=q"], "both set train.init_from"),
        (["translate", "/nonexistent.pt", "a.png", "b.png", "--device", "cpu"], "checkpoint not found"),
        (["translate", "/nonexistent.pt", "a.png", "b.png", "--device", "cuda:7"], "no CUDA device"),
        (["download", "not_a_dataset"], "unknown dataset"),
        (["train", "fsesim", "--data", "x", "--json"], "--json goes with --probe"),
        (["train", "fsesim", "--data", "x", "--no-search"], "--no-search goes with --probe"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_train_cli_with_empty_domain_folder(tmp_path, capsys):
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainB").mkdir()
    assert main(["train", "fsesim", "--data", str(tmp_path), *[arg for s in TINY for arg in ("--set", s)]]) == 2
    assert "no images" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return train(tiny_config("fsesim", tiny_data(root / "data"), root / "runs", "train.max_steps=1"))


def test_translate_keeps_odd_sizes(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"odd.png": (301, 177), "tiny.jpg": (5, 3), "odd2.png": (301, 177)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(inputs / name)
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8), mode="L").save(inputs / "gray.png")
    assert main(["translate", str(checkpoint), str(inputs), str(tmp_path / "out"), "--device", "cpu"]) == 0
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()}
    assert sizes == {"odd.png": (301, 177), "tiny.png": (5, 3), "odd2.png": (301, 177), "gray.png": (30, 20)}
    single = tmp_path / "single.png"
    assert main(["translate", str(checkpoint / "checkpoints" / "latest.pt"), str(inputs / "odd.png"), str(single)]) == 0
    assert Image.open(single).size == (301, 177)


class _ZipServer(http.server.BaseHTTPRequestHandler):
    payload = b""
    truncate_first = 0
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        if type(self).requests <= type(self).truncate_first:
            self.wfile.write(self.payload[: len(self.payload) // 3])
            self.close_connection = True
            return
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for split in ("trainA", "trainB"):
            bundle.writestr(f"toy/{split}/1.txt", "x" * 5000)
    _ZipServer.payload = buffer.getvalue()
    _ZipServer.requests = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ZipServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/toy.zip"
    httpd.shutdown()


def test_download_from_local_server(tmp_path, server, capsys):
    target = download("toy", tmp_path, progress=False, datasets={"toy": server})
    assert (target / "trainA" / "1.txt").read_text() == "x" * 5000
    with pytest.raises(DataError, match="already exists"):
        download("toy", tmp_path, progress=False, datasets={"toy": server})
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["download", "maps", "--dir", str(tmp_path / "notes.txt")]) == 2  # refused before any request
    assert "--dir " in (err := capsys.readouterr().err) and "notes.txt is a file; choose a folder" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_truncated_download_is_retried(tmp_path, server):
    _ZipServer.truncate_first = 1
    try:
        target = download("toy", tmp_path, retries=3, progress=False, datasets={"toy": server})
    finally:
        _ZipServer.truncate_first = 0
    assert (target / "trainB" / "1.txt").is_file() and _ZipServer.requests == 2


def test_truncated_download_is_reported(tmp_path, server):
    _ZipServer.truncate_first = 99
    try:
        with pytest.raises(DataError, match=r"after 2 tries: .*truncated"):
            download("toy", tmp_path, retries=2, progress=False, datasets={"toy": server})
    finally:
        _ZipServer.truncate_first = 0
    assert not (tmp_path / "toy").exists()


def test_resume_from_the_command_line(checkpoint, capsys, tmp_path):
    assert main(["train", "--resume", str(checkpoint)]) == 0
    assert "resumed and finished" in capsys.readouterr().out
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no checkpoints/latest.pt" in capsys.readouterr().err


def test_help_and_version_import_nothing_heavy():
    """`sesim --help` starts fast: the CLI module loads neither torch nor pydantic (time:
    benchmarks/startup.py)."""
    import subprocess
    import sys

    probe = "import sys, sesim.cli; print(sorted(m for m in ('torch', 'pydantic', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_debug_is_accepted_after_the_command_and_keeps_the_exit_code(capsys):
    assert main(["download", "not_a_dataset", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("sesim: error:") and "unknown dataset" in err
    assert main(["download", "not_a_dataset"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_every_command_has_a_description_and_examples(capsys):
    from sesim.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert parser.description and "examples:" in (parser.epilog or ""), name
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_presets_and_info(tmp_path, checkpoint, capsys):
    from sesim.presets import preset_names

    assert main(["presets"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == preset_names() and "fsesim" in listed
    assert main(["info", str(checkpoint), "--config"]) == 0
    out = capsys.readouterr().out
    assert "method: one_sided" in out and "step: 1" in out and "network generator" in out and "max_steps: 1" in out
    assert main(["info", str(tmp_path / "nothing.pt")]) == 2


def test_only_user_errors_are_one_line_an_internal_bug_keeps_its_traceback(monkeypatch, capsys):
    import sesim.cli as cli
    from sesim.errors import CheckpointError

    def failing(error):
        def run(args):
            raise error

        return run

    parser = cli.build_parser

    def with_failure(error):
        def build():
            built = parser()
            built.set_defaults(run=failing(error))
            for action in built._subparsers._group_actions:
                for sub in action.choices.values():
                    sub.set_defaults(run=failing(error))
            return built

        return build

    monkeypatch.setattr(cli, "build_parser", with_failure(CheckpointError("x.pt: not a checkpoint")))
    assert cli.main(["presets"]) == 2
    assert capsys.readouterr().err == "sesim: error: x.pt: not a checkpoint\n"
    monkeypatch.setattr(cli, "build_parser", with_failure(PermissionError(13, "Permission denied", "/out/a.png")))
    assert cli.main(["presets"]) == 2
    assert "Permission denied" in capsys.readouterr().err
    for bug in (ValueError("shapes differ inside"), KeyError("networks"), OSError("no file named")):
        monkeypatch.setattr(cli, "build_parser", with_failure(bug))
        with pytest.raises(type(bug)):  # not swallowed as 'bad input': Python prints the traceback, exit 1
            cli.main(["presets"])


def test_the_probe_under_torchrun_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "fsesim", "--data", "x", "--probe"]) == 2
    assert "--probe measures one process" in capsys.readouterr().err
