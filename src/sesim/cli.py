"""The ``sesim`` command: train | translate | export | eval | analyze | visualize | segscore | demo | download |
presets | info."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from sesim import __version__
from sesim.errors import one_line
from sesim.files import INCEPTION_FILE, LPIPS_ALEXNET_FILE
from sesim.presets import preset_names, preset_summary

# Start-up: this module imports nothing heavy (no torch, no pydantic), so --help and --version
# answer at once; each command imports what it needs (benchmarks/startup.py measures it).


def _train(args: argparse.Namespace) -> int:
    from sesim.config import to_yaml
    from sesim.errors import ConfigError
    from sesim.training.loop import preflight, train
    from sesim.training.resolve import resolve_run

    for flag, given in (("--json", args.json), ("--no-search", args.no_search)):
        if given and not args.probe:
            raise ConfigError(f"train: {flag} goes with --probe (it changes what the probe reports); add --probe")
    if args.probe and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "train: --probe measures one process; run it without torchrun (with train.batch_size set to one "
            "process's share of the global batch)"
        )
    run = resolve_run(
        args.config, resume=args.resume, data=args.data, init_from=args.init_from, overrides=args.set or ()
    )
    if args.probe:
        return _probe(run, args)
    if args.dry_run:
        print(to_yaml(run.config), end="")
        for line in preflight(run.config, decode=args.dry_run == "full"):
            print(f"# ok: {line}")
        if args.resume:
            print(f"# would resume {args.resume} at step {run.step} (dry run: nothing trained)")
        else:
            print("# dry run: every check a real start makes passed; nothing trained")
        return 0
    run_dir = train(run)
    print(f"{'resumed and finished' if args.resume else 'finished'}: {run_dir}")
    return 0


def _probe(run, args: argparse.Namespace) -> int:
    from sesim.training.probe import probe, report

    result = probe(run.config, search=not args.no_search, step=run.step, decode=args.dry_run == "full")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for line in result["checks"]:
        print(f"# ok: {line}")
    print(report(result))
    return 0


def _translate(args: argparse.Namespace) -> int:
    from sesim.errors import ConfigError
    from sesim.inference import load_generator, translate_paths
    from sesim.inference.style import style_codes
    from sesim.runtime import pick_device, resolve_precision

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seed is not None and args.num_styles is None:
        raise ConfigError("--seed seeds the codes of --num-styles; give --num-styles K with it, or leave it out")
    if args.tile is not None and args.tile and (args.tile < 16 or args.tile % 4):
        raise ConfigError(f"--tile must be 0 (whole images) or a multiple of 4 of at least 16, got {args.tile}")
    if args.tile_overlap is not None and not 0 <= args.tile_overlap < (args.tile or 1 << 30):
        raise ConfigError(f"--tile-overlap must be at least 0 and below --tile, got {args.tile_overlap}")
    device = pick_device(args.device)
    loaded = load_generator(args.checkpoint, device, direction=args.direction)
    generator = loaded.generator
    autocast = resolve_precision(args.precision, device)
    styles = style_codes(loaded, device, args.num_styles, args.seed, args.style_from)
    written = translate_paths(
        generator, args.input, args.output, device, args.batch_size, autocast, styles,
        tile=args.tile, overlap=args.tile_overlap, overwrite=args.overwrite, skip_existing=args.skip_existing,
        skip_unreadable=args.on_bad_image == "skip" and Path(args.input).is_dir(),
        name_styles=args.num_styles is not None,
    )  # fmt: skip
    for note in written.notes:
        print(f"note: {note}", file=sys.stderr)
    if written:
        folders = sorted({str(Path(path).parent) for path in written})
        shown = ", ".join(Path(path).name for path in written[:3]) + (", ..." if len(written) > 3 else "")
        print(f"wrote {len(written)} image(s) to {', '.join(folders)}: {shown}")
    elif not written.skipped:
        print(f"wrote nothing: every input already has its output in {args.output}")
    if written.skipped:
        print(f"sesim: error: {len(written.skipped)} input(s) could not be read and were skipped (listed above); "
              "fix or remove them, then --skip-existing translates just those", file=sys.stderr)  # fmt: skip
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sesim.demo import run_demo, summary_lines

    run_dir = run_demo(args.out, args.steps, tuple(args.set or []))
    print(summary_lines(json.loads((run_dir / "report.json").read_text())))
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sesim.errors import ConfigError
    from sesim.inference.export import ExportMismatch, export_generator

    if not args.tolerance >= 0:
        raise ConfigError(f"--tolerance must be at least 0, got {args.tolerance}")
    try:
        gap = export_generator(
            args.checkpoint, args.output, args.check_image, args.overwrite, args.tolerance, args.direction
        )
    except ExportMismatch as error:  # not the user's input: exit 1, but no traceback to read
        kept = f"; {args.output} is unchanged" if Path(args.output).exists() else ""
        print(f"sesim: error: {error}; nothing written{kept} (a --tolerance above it accepts it)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = f"; {args.output} is unchanged" if Path(args.output).exists() else ""
        print(f"sesim: interrupted; nothing written{kept}", file=sys.stderr)
        return 130
    print(f"wrote {args.output}; largest difference to PyTorch on the check image: {gap:.2e}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sesim.evaluation.evaluate import evaluate, markdown
    from sesim.outputs import check_reports, report_files, write_report
    from sesim.runtime import pick_device

    metrics = args.metrics.split(",") if args.metrics else None
    out = Path(args.out) if args.out else Path(args.fake).parent / f"eval_{Path(args.fake).name}"
    reports = report_files(out)
    check_reports(reports, "--out", args.overwrite)  # before the scoring, not after it
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
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    table = markdown(result)
    write_report(*reports, result, table)
    print(table, end="")
    print(f"wrote {reports[0]} and {reports[1]}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from sesim.analysis.alignment import analyze, markdown, plot
    from sesim.errors import DataError
    from sesim.outputs import check_reports, write_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; analyze writes a folder (analysis.json, .md, .png): name a folder")
    check_reports([out / "analysis.json", out / "analysis.md", out / "analysis.png"], "--out", args.overwrite)
    summary = analyze(
        args.a, args.b, args.backbone, tuple(args.taps.split(",")) if args.taps else None, args.size,
        args.max_pairs, args.unaligned, window=args.window, heads_checkpoint=args.heads_from,
        weights=args.weights, seed=args.seed,
    )  # fmt: skip
    table = markdown(summary)
    write_report(out / "analysis.json", out / "analysis.md", summary, table)
    plot(summary, out / "analysis.png")
    print(table, end="")
    print(f"wrote {out / 'analysis.json'}, analysis.md and analysis.png")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from sesim.analysis.similarity_maps import visualize
    from sesim.errors import ConfigError

    if args.point and (args.num_points is not None or args.seed is not None):
        raise ConfigError("--num-points and --seed draw random points; with --point they do nothing: leave them out")
    if args.num_points is not None and args.num_points < 1:
        raise ConfigError(f"--num-points must be at least 1, got {args.num_points}")
    points = [_point(text) for text in args.point] if args.point else None
    path = visualize(
        args.checkpoint, args.image, args.out, points, args.num_points or 3, args.size, args.seed or 0,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


def _point(text: str) -> tuple[int, int]:
    from sesim.errors import ConfigError

    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--point {text!r}: expected X,Y in pixels, e.g. --point 120,64") from None
    return x, y


def _segscore(args: argparse.Namespace) -> int:
    from sesim.errors import ConfigError
    from sesim.evaluation.segscore import cityscapes_score, load_segmenter, markdown
    from sesim.outputs import check_reports, report_files, write_report
    from sesim.runtime import pick_device

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 256x128") from None
    reports = report_files(args.out) if args.out else []
    check_reports(reports, "--out", args.overwrite)
    segmenter = load_segmenter(args.segmenter_weights)
    result = cityscapes_score(args.photos, args.labels, segmenter, args.real, (width, height), pick_device(args.device))
    table = markdown(result)
    if reports:
        write_report(*reports, result, table)
    print(table, end="")
    return 0


def _download(args: argparse.Namespace) -> int:
    from sesim.data.download import download

    print(f"downloaded to {download(args.name, args.dir)}")
    return 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option that has a default says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" not in text and default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += f" (default: {default})"
        return text


def _command(commands, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name, help=summary, description=f"{summary}.\n\n{description}", epilog=f"examples:\n{examples}",
        formatter_class=_Help,
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


DIRECTION = {
    "choices": ("AtoB", "BtoA"), "default": "AtoB",
    "help": "AtoB, or BtoA for the run's B->A generator (cyclegan trains both; A and B as the run trained them)",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesim",
        description="Unpaired image translation with the spatially-correlative loss (FSeSim / LSeSim).",
        epilog="Run 'sesim COMMAND --help' for a command's options and examples; 'sesim presets' lists the presets.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"sesim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (also accepted after the command)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _command(
        commands, "train", "train a translator from a preset or YAML config",
        "Each run gets a new numbered folder under log.out_dir (config.yaml, log.jsonl, samples, checkpoints).\n"
        "Any config key can be set with --set SECTION.KEY=VALUE (docs/config.md lists them all).",
        "  sesim train fsesim --data datasets/horse2zebra\n"
        "  sesim train lsesim --data maps --set loss.backbone=efficientnet_lite0 --set train.max_steps=1000\n"
        "  sesim train --resume runs/001-fsesim --set train.max_steps=20000",
    )  # fmt: skip
    train.add_argument("config", nargs="?", help=f"preset ({', '.join(preset_names())}) or YAML file")
    train.add_argument("--data", help="dataset folder with trainA/ and trainB/ (sets data.root)")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.batch_size=4"
    )
    train.add_argument(
        "--dry-run", dest="dry_run", action="store_const", const="headers",
        help="print the resolved config and make every check a real start makes (every image's header, shapes, "
        "taps, weights, device, validation pairs, output folder); no training",
    )  # fmt: skip
    train.add_argument(
        "--dry-run=full", dest="dry_run", action="store_const", const="full",
        help="as --dry-run, and decode every training image in full (finds truncated files)",
    )  # fmt: skip
    train.add_argument(
        "--probe", action="store_true",
        help="make the --dry-run checks, then run a few real steps of this run on synthetic batches: peak memory, "
        "step time, how long the schedule takes and when it ends, the largest batch and crop that fit; no run folder",
    )  # fmt: skip
    train.add_argument("--json", action="store_true", help="with --probe: the measurements as JSON")
    train.add_argument("--no-search", action="store_true", help="with --probe: skip the largest batch and crop")
    train.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue a run exactly from its latest checkpoint; --set may change steps, schedule length, "
        "logging, workers and data paths (not networks or losses); --data points at moved data",
    )  # fmt: skip
    train.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="fine-tune: a new run starting from this run's weights (fresh optimizers)",
    )
    train.set_defaults(run=_train)

    translate = _command(
        commands, "translate", "translate an image or a folder with a trained generator",
        "The checkpoint carries its own config: no architecture flags. Images of any size keep their size;\n"
        "outputs never replace inputs or existing files (see --overwrite); large images are translated in\n"
        "seamless tiles.",
        "  sesim translate runs/001-fsesim photos/ out/\n"
        "  sesim translate runs/001-fsesim/checkpoints/best.pt big.jpg big_translated.png --tile 1024\n"
        "  sesim translate runs/002-multimodal night/ out/ --num-styles 5\n"
        "  sesim translate runs/001-fsesim photos/ out/ --skip-existing   # finish an interrupted folder",
    )  # fmt: skip
    translate.add_argument("checkpoint", help="a run folder or a .pt checkpoint")
    translate.add_argument("input", help="an image file or a folder of images")
    translate.add_argument("output", help="output image file (.png, .jpg) or folder")
    translate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    translate.add_argument("--direction", **DIRECTION)
    translate.add_argument("--batch-size", type=int, default=8, help="images of one size per batch")
    translate.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 on CUDA, fp32 on CPU"
    )
    style = translate.add_mutually_exclusive_group()
    style.add_argument("--num-styles", type=int, help="multimodal: K outputs per input, NAME_s0 ... NAME_sK-1")
    style.add_argument(
        "--style-from", metavar="IMAGE",
        help="multimodal: take the style of this image (any size: seen at the training scale, in crop-size views)",
    )  # fmt: skip
    translate.add_argument("--seed", type=int, help="with --num-styles: seed of the drawn style codes (default: 0)")
    translate.add_argument(
        "--tile", type=int, metavar="N",
        help="translate images larger than N x N in overlapping tiles, blended without seams (0: always whole; "
        "default: whole unless the memory estimate says an image would not fit, then the largest tile that does)",
    )  # fmt: skip
    translate.add_argument(
        "--tile-overlap", type=int, metavar="PX", help="pixels tiles share (default: N / 4, at most 128)"
    )
    existing = translate.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="allow outputs that replace existing files or input images, or sit in the input folder",
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="translate only the inputs without an output yet (finish a folder after a stop or a bad image)",
    )
    translate.add_argument(
        "--on-bad-image",
        choices=["skip", "stop"],
        default="skip",
        help="an unreadable input in a folder: skip it (one line each, the rest translated, exit 2 at the end) "
        "or stop there",
    )
    translate.set_defaults(run=_translate)

    export = _command(
        commands, "export", "export the generator to ONNX (.onnx) or TorchScript (.pt)",
        "The export takes any batch and any size of at least 8x8 (it pads to multiples of 4 and crops back) and is "
        "checked against PyTorch on an image.",
        "  sesim export runs/001-fsesim generator.onnx --check-image photo.jpg\n"
        "  sesim export runs/001-fsesim generator.pt",
    )  # fmt: skip
    export.add_argument("checkpoint", help="a run folder or a .pt checkpoint")
    export.add_argument("output", help="out.onnx or out.pt")
    export.add_argument("--check-image", help="image to compare the export against PyTorch on (default: a pattern)")
    export.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest accepted difference; over it, nothing is written"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export.add_argument("--direction", **DIRECTION)
    export.set_defaults(run=_export)

    evaluation = _command(
        commands, "eval", "score translations: FID/KID, offline FD, paired metrics, LPIPS diversity",
        f"FID and KID need the Inception weights file ({INCEPTION_FILE}); fd_efficientnet runs offline.\n"
        "With --paired-with: the GcGAN maps protocol (RMSE, pixel accuracy), PSNR and SSIM by file name.",
        "  sesim eval --real datasets/maps/testB --fake out/ --paired-with datasets/maps/testB\n"
        f"  sesim eval --real photos/ --fake out/ --metrics fid --inception-weights {INCEPTION_FILE}",
    )  # fmt: skip
    evaluation.add_argument("--real", required=True, help="folder of real target-domain images")
    evaluation.add_argument("--fake", required=True, help="folder of translated images")
    evaluation.add_argument("--paired-with", help="ground-truth folder, matched to --fake by file name")
    evaluation.add_argument(
        "--metrics", help="comma list of fid, fd_efficientnet, paired, lpips_diversity (default: what applies)"
    )
    evaluation.add_argument("--lpips-weights", help=f"torchvision {LPIPS_ALEXNET_FILE} for lpips_diversity")
    evaluation.add_argument("--inception-weights", help=f"FID Inception weights file ({INCEPTION_FILE})")
    evaluation.add_argument("--out", help="output path without suffix (default: eval_FAKE next to --fake)")
    evaluation.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    evaluation.add_argument("--overwrite", action="store_true", help="replace existing OUT.json / OUT.md")
    evaluation.set_defaults(run=_eval)

    analysis = _command(
        commands, "analyze", "aligned vs unaligned pairs under each content loss (the paper's study; AUC)",
        "For paired folders (same file name = same content): how well each loss tells A_i's own B_i from\n"
        "other images' B_j (AUC 0.5 is chance). JSON, a Markdown table and a plot.",
        "  sesim analyze --a datasets/maps/trainA --b datasets/maps/trainB --out analysis/\n"
        "  sesim analyze --a A/ --b B/ --heads-from runs/002-lsesim --max-pairs 50",
    )  # fmt: skip
    analysis.add_argument("--a", required=True, help="domain A folder")
    analysis.add_argument("--b", required=True, help="domain B folder; same file name = same content")
    analysis.add_argument(
        "--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "vgg16"], help="feature extractor"
    )
    analysis.add_argument("--weights", default="imagenet", help="backbone weights: imagenet or a file path")
    analysis.add_argument("--taps", help="comma list of taps (default: the backbone's)")
    analysis.add_argument("--size", type=int, default=256, help="images are resized to SIZE x SIZE")
    analysis.add_argument("--max-pairs", type=int, default=100, help="aligned pairs scored (the first N files)")
    analysis.add_argument("--unaligned", type=int, default=5, help="unaligned partners per image")
    analysis.add_argument("--window", type=int, default=9, help="local window of the local FSeSim variants")
    analysis.add_argument("--heads-from", metavar="CHECKPOINT", help="add LSeSim with this run's trained heads")
    analysis.add_argument("--seed", type=int, default=0, help="seed of the unaligned partners and query positions")
    analysis.add_argument("--out", default="analysis", help="output folder")
    analysis.add_argument("--overwrite", action="store_true", help="replace the analysis.* files in --out")
    analysis.set_defaults(run=_analyze)

    visual = _command(
        commands, "visualize", "draw the similarity maps of an image and its translation",
        "Per tap and query point: the source's similarity map beside the translation's (what the loss compares).",
        "  sesim visualize runs/001-fsesim photo.jpg --point 120,64 --out similarity.png",
    )  # fmt: skip
    visual.add_argument("checkpoint", help="a run folder or a .pt checkpoint")
    visual.add_argument("image", help="the source image")
    visual.add_argument("--out", default="similarity.png", help="output PNG")
    visual.add_argument("--point", action="append", metavar="X,Y", help="query point in pixels (repeatable)")
    visual.add_argument("--num-points", type=int, help="random points when no --point is given (default: 3)")
    visual.add_argument("--size", type=int, default=256, help="the image is resized to SIZE x SIZE")
    visual.add_argument("--seed", type=int, help="seed of the random points (default: 0)")
    visual.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    visual.set_defaults(run=_visualize)

    seg = _command(
        commands, "segscore", "Cityscapes label->photo score with a DRN-D-22 segmenter",
        "Mean IoU, pixel and class accuracy of the segmenter on the translated photos against *_labelIds.png\n"
        "(mapped to the 19 train ids), with the real photos' score as the upper bound.",
        "  sesim segscore --photos out/ --labels gtFine_val_labelIds/ --real photos/ "
        "--segmenter-weights drn_d_22_cityscapes.pth",
    )  # fmt: skip
    seg.add_argument("--photos", required=True, help="translated photos")
    seg.add_argument("--labels", required=True, help="ground-truth *_labelIds.png files (matched by name)")
    seg.add_argument("--segmenter-weights", required=True, help="DRN-D-22 Cityscapes state dict (.pth)")
    seg.add_argument("--real", help="real photos of the same scenes: the upper bound")
    seg.add_argument("--size", default="256x128", help="WIDTHxHEIGHT the photos are scored at")
    seg.add_argument("--out", help="write OUT.json and OUT.md")
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    seg.add_argument("--overwrite", action="store_true", help="replace existing OUT.json / OUT.md")
    seg.set_defaults(run=_segscore)

    demo = _command(
        commands, "demo", "train on synthetic domains and write a report (a few minutes on a CPU)",
        "Flat label layouts -> textured renderings with known ground truth, on the offline backbone; writes\n"
        "runs/NNN-demo/report.html with the untrained and trained translations and a layout score.",
        "  sesim demo\n  sesim demo --steps 100 --out /tmp/runs",
    )  # fmt: skip
    demo.add_argument("--out", default="runs", help="where runs are written")
    demo.add_argument("--steps", type=int, help="training steps (default: the demo preset's)")
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the demo preset")
    demo.set_defaults(run=_demo)

    download = _command(
        commands, "download", "download a standard unpaired dataset (CycleGAN/CUT layout)",
        "Writes DIR/NAME/trainA, trainB, testA, testB; an interrupted download resumes.",
        "  sesim download horse2zebra\n  sesim download maps --dir /data",
    )  # fmt: skip
    download.add_argument("name", help="e.g. horse2zebra, maps, cityscapes")
    download.add_argument("--dir", default="datasets", help="parent folder")
    download.set_defaults(run=_download)

    presets = _command(
        commands, "presets", "list the presets: name and what each is",
        "Each preset is a complete YAML file in sesim/configs/ (every key spelled out).",
        "  sesim presets\n  sesim train cut --data datasets/horse2zebra",
    )  # fmt: skip
    presets.set_defaults(run=_presets)

    info = _command(
        commands, "info", "describe a checkpoint: method, step, data, networks, versions",
        "Reads only the checkpoint (safely, weights only); --config prints its whole stored config.",
        "  sesim info runs/001-fsesim\n  sesim info runs/001-fsesim/checkpoints/best.pt --config",
    )  # fmt: skip
    info.add_argument("checkpoint", help="a run folder or a .pt checkpoint")
    info.add_argument("--config", action="store_true", help="also print the stored config as YAML")
    info.set_defaults(run=_info)
    return parser


def _presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        print(f"{name:22s} {preset_summary(name)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from sesim.checkpoint import describe

    print(describe(args.checkpoint, with_config=args.config), end="")
    return 0


# What to change when a command runs out of memory (train answers with its own settings).
OUT_OF_MEMORY_HINTS = {
    "translate": "--batch-size 1, or --tile 512 (or smaller)",
    "eval": "score fewer or smaller images, or --device cpu where the card is small",
    "analyze": "a smaller --size or --max-pairs",
    "visualize": "a smaller --size",
    "export": "a smaller --check-image",
    "demo": "close other programs, or run it on a machine with more memory",
    "segscore": "fewer or smaller images",
}
# Commands that compute on a device of their own: on the CPU an allocation past the memory there
# is fails (an error answered in one line) instead of waking the kernel's out-of-memory killer.
CAPPED = {"translate", "eval", "analyze", "visualize", "export", "segscore"}


def _run_capped(args: argparse.Namespace) -> int:
    if args.command not in CAPPED:
        return args.run(args)  # train caps itself, on its configured device
    import torch

    from sesim.runtime import memory_cap

    cuda = getattr(args, "device", "cpu") != "cpu" and torch.cuda.is_available()
    with memory_cap(torch.device("cuda" if cuda else "cpu")):
        return args.run(args)


def _out_of_memory(args: argparse.Namespace, error: BaseException) -> str | None:
    """The one line for a command that ran out of memory (``None``: another error)."""
    if "torch" not in sys.modules and not isinstance(error, MemoryError):
        return None
    from sesim.runtime import is_out_of_memory

    if not is_out_of_memory(error):
        return None
    hint = OUT_OF_MEMORY_HINTS.get(args.command, "free some memory")
    size = f" at --size {args.size}" if getattr(args, "size", None) is not None else ""
    return f"sesim {args.command} ran out of memory{size} ({one_line(error)}); {hint}"


def is_user_error(error: BaseException) -> bool:
    """What is the user's to fix: the project's error type (``SesimError``), and file-system
    errors about a named path (permission denied, disk full, a folder where a file should be).
    Anything else is a bug in SeSim and keeps its traceback."""
    from sesim.errors import SesimError  # imported when an error happens: start-up stays fast

    return isinstance(error, SesimError) or (isinstance(error, OSError) and error.filename is not None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return _run_capped(args)
    except KeyboardInterrupt as stop:
        from sesim.errors import Interrupted  # its message says what was kept and how to go on

        print(f"sesim: {stop if isinstance(stop, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as error:
        line = one_line(error) if is_user_error(error) else _out_of_memory(args, error)
        if debug and line:
            traceback.print_exc()  # what --debug asks for; the line and the exit code stay a user error's
        elif debug:
            raise
        if line:
            print(f"sesim: error: {line}", file=sys.stderr)
            return 2
        from sesim.training.chores import TrainingStopped

        if isinstance(error, TrainingStopped):
            print(f"sesim: stopped: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
