"""The ``sesim`` command: train | translate | export | eval | analyze | visualize | segscore | demo | download."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sesim import __version__
from sesim.backbones import WeightsUnavailableError
from sesim.config import ConfigError, load_config, preset_names, to_yaml
from sesim.data.images import DataError
from sesim.export import ExportError
from sesim.metrics.distribution import INCEPTION_FILE
from sesim.training.checkpoint import CheckpointError
from sesim.training.loop import DeviceError, Interrupted, TrainingStopped

USER_ERRORS = (
    ConfigError, DataError, CheckpointError, DeviceError, WeightsUnavailableError, ExportError, ValueError, OSError,
)  # fmt: skip


def one_line(error: BaseException) -> str:
    """The user-facing line of an error. An error re-raised from a data-loader worker carries the
    worker's traceback in its text: its last line is the original message (with the file)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    if "Original Traceback" in text:
        return re.sub(r"^[\w.]*(Error|Exception): ", "", text.splitlines()[-1])
    return text.splitlines()[0]


def _train(args: argparse.Namespace) -> int:
    from sesim.training.loop import preflight, resume_config, train

    if args.resume:
        if args.config:
            raise ConfigError(f"train: give a preset ({args.config}) or --resume {args.resume}, not both")
        if args.init_from:
            raise ConfigError("train: --init-from starts a new run; --resume continues one: give one of them")
        overrides = list(args.set or [])
        if args.data:  # the run's data moved: a folder with trainA/ and trainB/ replaces what it had
            overrides += [f"data.root={Path(args.data).absolute()}", "data.folder_a=", "data.folder_b="]
        config, checkpoint = resume_config(args.resume, overrides)
        if args.dry_run:
            print(to_yaml(config), end="")
            for line in preflight(config):
                print(f"# ok: {line}")
            print(f"# would resume {args.resume} at step {checkpoint['step']} (dry run: nothing trained)")
            return 0
        run_dir = train(config, resume=args.resume, checkpoint=checkpoint)
        print(f"resumed and finished: {run_dir}")
        return 0
    if not args.config:
        raise ConfigError("train: give a preset or YAML file (presets: " + ", ".join(preset_names()) + ")")
    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.init_from:
        overrides.append(f"train.init_from={args.init_from}")
    config = load_config(args.config, overrides)
    if args.dry_run:
        print(to_yaml(config), end="")
        for line in preflight(config):
            print(f"# ok: {line}")
        print("# dry run: every check a real start makes passed; nothing trained")
        return 0
    if config.data.root is None and config.data.folder_a is None:
        raise ConfigError(
            "train: --data DIR is required (a folder with trainA/ and trainB/), or --set data.folder_a=..."
        )
    run_dir = train(config)
    print(f"finished: {run_dir}")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from sesim.training.loop import load_generator, pick_device, resolve_precision
    from sesim.translate import translate_paths

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.tile is not None and args.tile and (args.tile < 16 or args.tile % 4):
        raise ConfigError(f"--tile must be 0 (whole images) or a multiple of 4 of at least 16, got {args.tile}")
    if args.tile_overlap is not None and not 0 <= args.tile_overlap < (args.tile or 1 << 30):
        raise ConfigError(f"--tile-overlap must be at least 0 and below --tile, got {args.tile_overlap}")
    device = pick_device(args.device)
    generator, _ = load_generator(args.checkpoint, device)
    autocast = resolve_precision(args.precision, device)
    styles = _styles(generator, args, device)
    notes: list[str] = []
    written = translate_paths(
        generator, args.input, args.output, device, args.batch_size, autocast, styles,
        tile=args.tile, overlap=args.tile_overlap, overwrite=args.overwrite, notes=notes,
    )  # fmt: skip
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    folders = sorted({str(Path(path).parent) for path in written})
    shown = ", ".join(Path(path).name for path in written[:3]) + (", ..." if len(written) > 3 else "")
    print(f"wrote {len(written)} image(s) to {', '.join(folders)}: {shown}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sesim.demo import run_demo

    run_dir = run_demo(args.out, args.steps, tuple(args.set or []))
    summary = json.loads((run_dir / "report.json").read_text())
    print(
        f"layout mIoU: untrained {summary['untrained']:.3f} -> trained {summary['trained']:.3f} "
        f"(ground truth {summary['ground_truth']:.3f}) in {summary['seconds']} s"
    )
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _styles(generator, args: argparse.Namespace, device):
    """Style codes for a multi-modal generator: K from the prior (seeded) or one from a reference image."""
    import torch

    from sesim.data.images import load_rgb, to_tensor

    if args.num_styles is None and args.style_from is None:
        return None
    if not hasattr(generator, "style_dim"):
        raise ConfigError("--num-styles/--style-from need a multimodal checkpoint (method: multimodal)")
    if args.style_from is not None:
        with torch.no_grad():
            return generator.encode_style(to_tensor(load_rgb(args.style_from))[None].to(device))
    if args.num_styles < 1:
        raise ConfigError(f"--num-styles must be at least 1, got {args.num_styles}")
    return torch.randn(args.num_styles, generator.style_dim, generator=torch.Generator().manual_seed(args.seed))


def _export(args: argparse.Namespace) -> int:
    from sesim.export import export_generator

    gap = export_generator(args.checkpoint, args.output, args.check_image)
    print(f"wrote {args.output}; largest difference to PyTorch on the check image: {gap:.2e}")
    if gap > args.tolerance:
        print(f"sesim: error: the export differs from PyTorch by {gap:.2e} (> {args.tolerance})", file=sys.stderr)
        return 1
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sesim.evaluate import evaluate, markdown
    from sesim.training.loop import pick_device

    metrics = args.metrics.split(",") if args.metrics else None
    device = pick_device(args.device)
    result = evaluate(
        args.real,
        args.fake,
        args.paired_with,
        metrics,
        args.inception_weights,
        device,
        lpips_weights=args.lpips_weights,
    )
    table = markdown(result)
    out = Path(args.out) if args.out else Path(args.fake).parent / f"eval_{Path(args.fake).name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from sesim.analysis import analyze, markdown, plot

    summary = analyze(
        args.a, args.b, args.backbone, tuple(args.taps.split(",")) if args.taps else None, args.size,
        args.max_pairs, args.unaligned, window=args.window, heads_checkpoint=args.heads_from,
        weights=args.weights, seed=args.seed,
    )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    (out / "analysis.md").write_text(table)
    plot(summary, out / "analysis.png")
    print(table, end="")
    print(f"wrote {out / 'analysis.json'}, analysis.md and analysis.png")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from sesim.visualize import visualize

    points = [_point(text) for text in args.point] if args.point else None
    path = visualize(args.checkpoint, args.image, args.out, points, args.num_points, args.size, args.seed)
    print(f"wrote {path}")
    return 0


def _point(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--point {text!r}: expected X,Y in pixels, e.g. --point 120,64") from None
    return x, y


def _segscore(args: argparse.Namespace) -> int:
    from sesim.segscore import cityscapes_score, load_segmenter, markdown
    from sesim.training.loop import pick_device

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 256x128") from None
    segmenter = load_segmenter(args.segmenter_weights)
    result = cityscapes_score(args.photos, args.labels, segmenter, args.real, (width, height), pick_device(args.device))
    table = markdown(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=2))
        Path(args.out).with_suffix(".md").write_text(table)
    print(table, end="")
    return 0


def _download(args: argparse.Namespace) -> int:
    from sesim.data.download import download

    print(f"downloaded to {download(args.name, args.dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesim", description="Unpaired image translation with the spatially-correlative loss."
    )
    parser.add_argument("--version", action="version", version=f"sesim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a translator from a preset or YAML config")
    train.add_argument("config", nargs="?", help=f"preset ({', '.join(preset_names())}) or YAML file")
    train.add_argument("--data", help="dataset folder with trainA/ and trainB/")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.batch_size=4")
    train.add_argument(
        "--dry-run", action="store_true",
        help="print the resolved config and check what a real start checks (data, taps, weights, device); no training",
    )  # fmt: skip
    train.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue a run exactly from its latest checkpoint; --set may change steps, schedule length, "
        "logging, workers and data paths (not networks or losses); --data points at moved data",
    )  # fmt: skip
    train.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="fine-tune: a new run that starts from this run's weights (fresh optimizers)",
    )
    train.set_defaults(run=_train)

    translate = commands.add_parser("translate", help="translate an image or a folder with a checkpoint")
    translate.add_argument("checkpoint", help="a .pt checkpoint or a run directory")
    translate.add_argument("input", help="an image file or a folder of images")
    translate.add_argument("output", help="output image file or folder")
    translate.add_argument("--device", default="auto")
    translate.add_argument("--batch-size", type=int, default=8, help="images of one size per batch (default 8)")
    translate.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 on CUDA, fp32 on CPU"
    )
    translate.add_argument("--num-styles", type=int, help="multimodal: K outputs per input, NAME_s0 ... NAME_sK-1")
    translate.add_argument("--style-from", metavar="IMAGE", help="multimodal: take the style of this image")
    translate.add_argument("--seed", type=int, default=0, help="seed of the drawn style codes (default 0)")
    translate.add_argument(
        "--tile", type=int, metavar="N",
        help="translate images larger than N x N in overlapping tiles, blended without seams (0: always whole; "
        "default: whole unless the memory estimate says an image would not fit, then the largest tile that does)",
    )  # fmt: skip
    translate.add_argument("--tile-overlap", type=int, metavar="PX", help="pixels tiles share (default: N / 4)")
    translate.add_argument(
        "--overwrite", action="store_true", help="allow outputs that replace input images or sit in the input folder"
    )
    translate.set_defaults(run=_translate)

    export = commands.add_parser("export", help="export the generator to ONNX (.onnx) or TorchScript (.pt)")
    export.add_argument("checkpoint", help="a .pt checkpoint or a run directory")
    export.add_argument("output", help="out.onnx or out.pt")
    export.add_argument("--check-image", help="image to compare the export against PyTorch on (default: a pattern)")
    export.add_argument("--tolerance", type=float, default=1e-3, help="largest accepted difference (default 1e-3)")
    export.set_defaults(run=_export)

    evaluation = commands.add_parser("eval", help="score translations: FID/KID, offline FD, paired metrics")
    evaluation.add_argument("--real", required=True, help="folder of real target-domain images")
    evaluation.add_argument("--fake", required=True, help="folder of translated images")
    evaluation.add_argument("--paired-with", help="ground-truth folder, matched to --fake by file name")
    evaluation.add_argument(
        "--metrics", help="comma list of fid, fd_efficientnet, paired, lpips_diversity (default: what applies)"
    )
    evaluation.add_argument("--lpips-weights", help="torchvision alexnet-owt-7be5be79.pth for lpips_diversity")
    evaluation.add_argument("--inception-weights", help=f"FID Inception weights file ({INCEPTION_FILE})")
    evaluation.add_argument("--out", help="output path without suffix (default: next to --fake)")
    evaluation.add_argument("--device", default="auto")
    evaluation.set_defaults(run=_eval)

    analysis = commands.add_parser("analyze", help="aligned vs unaligned pairs under each content loss (AUC)")
    analysis.add_argument("--a", required=True, help="domain A folder")
    analysis.add_argument("--b", required=True, help="domain B folder; same file name = same content")
    analysis.add_argument("--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "vgg16"])
    analysis.add_argument("--weights", default="imagenet", help="backbone weights: imagenet or a file path")
    analysis.add_argument("--taps", help="comma list of taps (default: the backbone's)")
    analysis.add_argument("--size", type=int, default=256, help="images are resized to SIZE x SIZE")
    analysis.add_argument("--max-pairs", type=int, default=100)
    analysis.add_argument("--unaligned", type=int, default=5, help="unaligned partners per image")
    analysis.add_argument("--window", type=int, default=9, help="local window of the local FSeSim variants")
    analysis.add_argument("--heads-from", metavar="CHECKPOINT", help="add LSeSim with this run's trained heads")
    analysis.add_argument("--seed", type=int, default=0)
    analysis.add_argument("--out", default="analysis", help="output folder (default: analysis)")
    analysis.set_defaults(run=_analyze)

    visual = commands.add_parser("visualize", help="draw the similarity maps of an image and its translation")
    visual.add_argument("checkpoint", help="a .pt checkpoint or a run directory")
    visual.add_argument("image", help="the source image")
    visual.add_argument("--out", default="similarity.png", help="output PNG (default: similarity.png)")
    visual.add_argument("--point", action="append", metavar="X,Y", help="query point in pixels (repeatable)")
    visual.add_argument("--num-points", type=int, default=3, help="random points when no --point is given")
    visual.add_argument("--size", type=int, default=256, help="the image is resized to SIZE x SIZE")
    visual.add_argument("--seed", type=int, default=0)
    visual.set_defaults(run=_visualize)

    seg = commands.add_parser("segscore", help="Cityscapes label->photo score with a DRN-D-22 segmenter")
    seg.add_argument("--photos", required=True, help="translated photos")
    seg.add_argument("--labels", required=True, help="ground-truth *_labelIds.png files (matched by name)")
    seg.add_argument("--segmenter-weights", required=True, help="DRN-D-22 Cityscapes state dict (.pth)")
    seg.add_argument("--real", help="real photos of the same scenes: the upper bound")
    seg.add_argument("--size", default="256x128", help="WIDTHxHEIGHT the photos are scored at (default 256x128)")
    seg.add_argument("--out", help="write OUT.json and OUT.md")
    seg.add_argument("--device", default="auto")
    seg.set_defaults(run=_segscore)

    demo = commands.add_parser("demo", help="train on synthetic domains and write a report (a few minutes on CPU)")
    demo.add_argument("--out", default="runs", help="where runs are written (default: runs)")
    demo.add_argument("--steps", type=int, help="training steps (default: the demo preset's)")
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the demo preset")
    demo.set_defaults(run=_demo)

    download = commands.add_parser("download", help="download a standard unpaired dataset")
    download.add_argument("name", help="e.g. horse2zebra, maps, cityscapes")
    download.add_argument("--dir", default="datasets", help="parent folder (default: datasets)")
    download.set_defaults(run=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"sesim: error: {one_line(error)}", file=sys.stderr)
        return 2
    except TrainingStopped as error:
        if args.debug:
            raise
        print(f"sesim: stopped: {error}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(
            f"sesim: interrupted at step {stop.step}; checkpoint saved. "
            f"Continue with: sesim train --resume {stop.run_dir}",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print("sesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
