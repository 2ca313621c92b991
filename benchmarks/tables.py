"""Write the results tables of README.md and benchmarks/RESULTS.md from the JSON files in
benchmarks/results/ (no hand-typed numbers). A block sits between the markers
``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``; ``--check`` only reports stale blocks.

    python benchmarks/tables.py          # rewrite the blocks
    python benchmarks/tables.py --check  # exit 1 when a block differs from its JSON
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md"]


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(result: dict) -> str:
    cpu = result.get("cpu_model") or result.get("cpu", "CPU")
    return result.get("device_name") or f"{cpu} ({result.get('threads')} threads)"


def loss(result: dict) -> str:
    facts = result["machine"]
    rows = result["rows"]
    floors = {r["batch"]: r["matmul_floor_ms"] for r in rows if "matmul_floor_ms" in r}
    backbones = {r["batch"]: r["vgg16_backbone_fwd_bwd_ms"] for r in rows if "vgg16_backbone_fwd_bwd_ms" in r}
    # A "--compare-revision REV" run carries "at_REV_ms" in its rows.
    timed = [key for r in rows for key in r if key.startswith("at_") and key.endswith("_ms")]
    revision = timed[0][3:-3] if timed else None
    lines = [
        f"`benchmarks/loss.py`, {_machine(facts)}, torch {facts['torch']}, {facts.get('date', '')}: three "
        "VGG16-shaped layers (256x64x64, 512x32x32, 512x32x32), 256 queries each, forward + backward of the "
        f"target features, median ms over {result.get('repeats', '?')} interleaved rounds"
        + (f"; `{revision}` is the structure loss as it was at that commit" if revision else "")
        + ".",
        "",
        "| batch | window | SeSim structure loss | "
        + (f"at `{revision}` | " if revision else "")
        + "authors' loop | speed-up | contrastive (LSeSim heads objective) | matmul floor |",
        "|---|---|---|---|---|---|---|" + ("---|" if revision else ""),
    ]
    for r in rows:
        if "sesim_ms" not in r:
            continue
        loop = f"{r['authors_loop_ms']:.1f} ms | {r['speedup']:.1f}x" if "authors_loop_ms" in r else "- | -"
        before = f"{r[f'at_{revision}_ms']:.1f} ms | " if revision else ""
        lines.append(f"| {r['batch']} | {r['window'] or 'global'} | {r['sesim_ms']:.1f} ms | {before}{loop} | "
                     f"{r['contrastive_ms']:.1f} ms | {floors[r['batch']]:.1f} ms |")  # fmt: skip
    lines += ["", "VGG16 backbone to relu4_3 at 256x256, forward + backward, same run: "
              + ", ".join(f"{ms:.0f} ms at batch {batch}" for batch, ms in backbones.items()) + "."]  # fmt: skip
    return "\n".join(lines)


def train_step(result: dict) -> str:
    lines = [
        f"`benchmarks/train_step.py`, {_machine(result)}, torch {result['torch']}, "
        f"{result.get('size', 256)}x{result.get('size', 256)}; "
        "baseline = plain eager fp32 step, contiguous layout, unfused Adam, same run.",
        "",
        "| method | batch | variant | median step | images/s | "
        + ("peak RSS of the process so far" if result["device"] == "cpu" else "peak GPU memory")
        + " | vs baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    baselines = {(r["method"], r["batch"]): r["median_ms"] for r in result["results"] if r["variant"] == "baseline"}
    for r in result["results"]:
        base = baselines.get((r["method"], r["batch"]))
        speedup = f"{base / r['median_ms']:.2f}x" if base else "-"
        memory = f"{r['peak_memory_mb'] / 1024:.2f} GiB"
        step = f"{r['median_ms'] / 1e3:.3f} s" if result["device"] == "cpu" else f"{r['median_ms']:.2f} ms"
        lines.append(f"| {r['method']} | {r['batch']} | {r['variant']} | {step} | "
                     f"{r['images_per_s']} | {memory} | {speedup} |")  # fmt: skip
    return "\n".join(lines)


def loop_gpu(result: dict) -> str:
    """``sesim train`` with its defaults against the benchmark's step with the same defaults."""
    steps = {(r["method"], r["batch"]): r for r in result["defaults"]}
    lines = [
        f"`bash benchmarks/gpu_checks.sh`, {result['device_name']}, torch {result['torch']}, {result['date']}: "
        "`sesim train` with its defaults (bf16, contiguous, the step as one CUDA graph) on synthetic 286 px "
        "domains (256 crops, 6 loader workers, log every 25 steps), 30 s per run; its logged images/s after "
        "the first two log lines, beside `benchmarks/train_step.py`'s defaults row of the same call.",
        "",
        "| method | batch | benchmark step | benchmark images/s | `sesim train` images/s | loop / benchmark |",
        "|---|---|---|---|---|---|",
    ]
    for loop in result["loops"]:
        step = steps.get((loop["method"], loop["batch"]), {})
        ratio = loop["loop_images_per_s"] / step["images_per_s"] if step else None
        lines.append(f"| {loop['method']} | {loop['batch']} | {step.get('median_ms', '-')} ms | "
                     f"{step.get('images_per_s', '-')} | {loop['loop_images_per_s']:.1f} | "
                     + (f"{ratio:.1%} |" if ratio else "- |"))  # fmt: skip
    return "\n".join(lines)


def op_count(result: dict) -> str:
    lines = [
        f"`benchmarks/op_count.py`, torch {result['torch']}, {result['date']}: ATen ops one training step dispatches "
        "with the preset's defaults on a CPU (one GPU kernel launch each; views and allocations aside), and the ops "
        "in it that make the host wait for the device.",
        "",
        "| method | precision | ops per step | host syncs |",
        "|---|---|---|---|",
    ]
    for r in result["results"]:
        syncs = ", ".join(f"{k} x{v}" for k, v in r["host_syncs"].items()) or "none"
        lines.append(f"| {r['method']} | {r['precision']} | {r['ops']} | {syncs} |")
    return "\n".join(lines)


def translate(result: dict) -> str:
    lines = [
        f"`benchmarks/translate.py`, {_machine(result)}, torch {result['torch']}: "
        "generator ngf 64 / 9 blocks, 256x256.",
        "",
        "| setting | batch | median | images/s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['batch']} | {r['median_ms']:.1f} ms | {r['images_per_s']} |" for r in result["results"]
    ]
    return "\n".join(lines)


def precision(result: dict) -> str:
    runs = result["runs"]
    lines = [
        f"`benchmarks/precision.py`, {_machine(result)}: the demo ({result['steps']} steps) in fp32 and bf16 autocast "
        f"with the same seed, and fp32 with another seed for the run-to-run noise. Gaps are mean absolute "
        f"differences of the loss curves averaged over windows of {result['window']} steps.",
        "",
        "| loss | gap bf16 vs fp32 (same seed) | gap fp32 seed 0 vs seed 1 |",
        "|---|---|---|",
    ]
    for key, value in result["gap_bf16_vs_fp32"].items():
        lines.append(f"| {key} | {value:.4f} | {result['gap_seed_vs_seed_fp32'][key]:.4f} |")
    lines += ["", "| run | layout mIoU after training | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {r['layout_miou']:.3f} | {r['seconds']} |" for name, r in runs.items()]
    return "\n".join(lines)


def maps_eval(result: dict) -> str:
    p = result["paired"]
    return "\n".join([
        f"`sesim eval` of `{Path(result['run_dir']).name}` on the held-out maps tiles 1001-1096 at 256x256 "
        f"({p['pairs']} pairs; GcGAN protocol).",
        "",
        "| RMSE | accuracy (< 5) | accuracy (< 10) | PSNR | SSIM | FD, EfficientNet-Lite0 (not FID) |",
        "|---|---|---|---|---|---|",
        f"| {p['rmse']:.2f} | {100 * p['accuracy_5']:.1f}% | {100 * p['accuracy_10']:.1f}% | {p['psnr']:.2f} dB | "
        f"{p['ssim']:.3f} | {result['fd_efficientnet']:.2f} |",
    ])  # fmt: skip


def maps_analysis(result: dict) -> str:
    lines = [
        f"`sesim analyze` on maps (aerial A_i vs map B_j): {result['pairs']} aligned and {result['unaligned_pairs']} "
        f"unaligned pairs, {result['backbone']} taps {', '.join(result['taps'])}, {result['size']} px.",
        "",
        "| loss | mean aligned | mean unaligned | aligned / unaligned | AUC |",
        "|---|---|---|---|---|",
    ]
    for name, r in sorted(result["losses"].items(), key=lambda item: -item[1]["auc"]):
        lines.append(f"| {name} | {r['aligned_mean']:.4f} | {r['unaligned_mean']:.4f} | "
                     f"{r['ratio_aligned_to_unaligned']:.3f} | {r['auc']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def maps_compare(result: dict) -> str:
    lines = [
        f"`benchmarks/maps_compare.py --steps {result['steps']}`, {result['machine']}, torch {result['torch']}, "
        f"{result['date']}: every method {result['steps']} steps on tiles 1-1000 with its preset and "
        f"`{' '.join(result['recipe'])}`; held-out tiles 1001-1096 translated whole at 256x256 and scored "
        "with `sesim eval --paired-with`.",
        "",
        "| method | RMSE | accuracy (< 5) | accuracy (< 10) | PSNR | SSIM | FD, EfficientNet-Lite0 (not FID) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in result["methods"].items():
        p = r["paired"]
        lines.append(f"| {label} | {p['rmse']:.2f} | {100 * p['accuracy_5']:.1f}% | {100 * p['accuracy_10']:.1f}% | "
                     f"{p['psnr']:.2f} dB | {p['ssim']:.3f} | {r['fd_efficientnet']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def translate_large(result: dict) -> str:
    facts = result["machine"]
    return "\n".join([
        f"`benchmarks/translate_large.py --size {result['size']}`, {_machine(facts)}, torch {facts['torch']}, "
        f"{facts.get('date', '')}: the paper's generator (ngf 64, 9 blocks) through `sesim translate`'s "
        "automatic tiling.",
        "",
        "| image | whole-image estimate | free memory | tiles | wall time | peak RSS of the process |",
        "|---|---|---|---|---|---|",
        f"| {result['size']}x{result['size']} | {result['whole_image_estimate_gib']:.1f} GiB | "
        f"{result['free_gib']:.1f} GiB | {result['tiles']} of {result['tile']}x{result['tile']} | "
        f"{result['seconds']:.0f} s | {result['peak_rss_gib']:.2f} GiB |",
    ])  # fmt: skip


def startup(result: dict) -> str:
    facts = result["machine"]
    revisions = [key[:-3] for key in result["rows"][0] if key.endswith("_ms") and key != "now_ms"]
    header = "| command | now | " + "".join(f"at `{rev}` | " for rev in revisions)
    lines = [
        f"`benchmarks/startup.py`, {_machine(facts)}, {facts.get('date', '')}: a fresh process per call, "
        f"median of {result['repeats']} interleaved rounds.",
        "",
        header.rstrip(),
        "|---|---|" + "---|" * len(revisions),
    ]
    for row in result["rows"]:
        others = "".join(f"{row[f'{rev}_ms']:.0f} ms | " for rev in revisions)
        lines.append(f"| `{row['command']}` | {row['now_ms']:.0f} ms | {others}".rstrip())
    return "\n".join(lines)


# Published maps figures (GcGAN paper, Fu et al. CVPR 2019: 1098 test pairs, 256 px, 400 epochs).
MAPS_PUBLISHED = {"CycleGAN": (28.15, 41.8, 63.7), "GAN alone": (33.27, 19.3, 42.0)}


def maps_gpu(result: dict) -> str:
    lines = [
        f"`benchmarks/gpu_checks.sh` stage (c) on {result.get('device_name') or 'the GPU'}: the paper's networks at "
        "256 px, EfficientNet-Lite0 backbone, bf16, a 1.5-minute budget each, held-out tiles 1001-1096; "
        "published rows (GcGAN paper, 400 epochs) for scale.",
        "",
        "| method | steps | RMSE | accuracy (< 5) | accuracy (< 10) | PSNR | SSIM | FD, EfficientNet-Lite0 (not FID) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, scores in result["methods"].items():
        p = scores["paired"]
        lines.append(f"| {method} | {scores.get('steps')} | {p['rmse']:.2f} | {100 * p['accuracy_5']:.1f}% | "
                     f"{100 * p['accuracy_10']:.1f}% | {p['psnr']:.2f} dB | {p['ssim']:.3f} | "
                     f"{scores.get('fd_efficientnet', float('nan')):.1f} |")  # fmt: skip
    for method, (rmse, five, ten) in MAPS_PUBLISHED.items():
        lines.append(f"| {method} (published) | 400 epochs | {rmse:.2f} | {five:.1f}% | {ten:.1f}% | - | - | - |")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, std


STUDY_COLUMNS = {  # key -> (heading, format)
    "layout_miou": ("layout mIoU", "{:.3f}"),
    "colour_error_mean": ("colour error (RGB)", "{:.1f}"),
    "lost_classes_per_image": ("classes lost / image", "{:.2f}"),
    "rmse": ("RMSE", "{:.2f}"),
    "accuracy_5": ("accuracy (< 5)", "{:.3f}"),
    "psnr": ("PSNR (dB)", "{:.2f}"),
    "ssim": ("SSIM", "{:.3f}"),
    "fd_efficientnet": ("FD, EfficientNet-Lite0", "{:.1f}"),
    "train_seconds": ("train s", "{:.0f}"),
}


LAYOUT_COLUMNS = ("layout_miou", "colour_error_mean", "lost_classes_per_image", "psnr", "ssim")
MAPS_COLUMNS = ("rmse", "accuracy_5", "psnr", "ssim", "fd_efficientnet", "train_seconds")


def study_groups(result: dict) -> dict[str, dict[str, list[dict]]]:
    """``{task: {method: [cells by seed]}}`` in the grid's order."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for task in result.get("tasks", []):
        groups[task["name"]] = {label: [] for label in task["cells"]}
    for cell in result["cells"]:
        groups.setdefault(cell["task"], {}).setdefault(cell["method"], []).append(cell)
    return groups


def cell_cpu(cell: dict, result: dict) -> str | None:
    """The CPU a study cell ran on (a cell without its own ``cpu`` ran on the study's first machine)."""
    return cell.get("cpu") or result.get("machine", {}).get("cpu")


def study_machines(result: dict) -> dict[str, int]:
    """``{cpu: cells}`` in the order the sittings ran."""
    counts: dict[str, int] = {}
    for cpu in (cell_cpu(cell, result) for cell in result["cells"]):
        counts[cpu] = counts.get(cpu, 0) + 1
    return counts


def study(result: dict) -> str:
    """Per task: mean +- std over seeds of each score, the per-seed headline values, and which
    methods differ from the best by more than the seed spread (their seed ranges do not overlap).
    The reference is the best mean among methods with at least two seeds (a single seed has no
    spread to compare); training seconds are given per CPU where sittings ran on several."""
    machine = result.get("machine", {})
    cpus = study_machines(result)
    where = "; ".join(f"{n} cells on {cpu}" for cpu, n in cpus.items())
    if len(cpus) <= 1:
        where = next(iter(cpus), machine.get("cpu"))
    lines = [
        f"`benchmarks/study.py`, {where}, {machine.get('threads')} threads, torch "
        f"{machine.get('torch')}; mean +- std over seeds (n; one seed: its value), every cell trained and scored "
        "through `sesim train`, `sesim translate` and `sesim eval`."
        + (" Train s: the mean on each CPU in that order (- where none ran there)." if len(cpus) > 1 else ""),
    ]
    tasks = {task["name"]: task for task in result.get("tasks", [])}
    for name, methods in study_groups(result).items():
        task = tasks.get(name, {"metric": "psnr", "higher_is_better": True, "steps": "?"})
        headline, higher = task["metric"], task["higher_is_better"]
        present = [m for m, cells in methods.items() if cells]
        if not present:
            continue
        # Training time matters where it is the budget being chosen (demo); elsewhere it was not
        # always measured on an idle machine.
        wanted = {"layouts": LAYOUT_COLUMNS, "demo": (*LAYOUT_COLUMNS, "train_seconds")}.get(name, MAPS_COLUMNS)
        columns = [k for k in wanted if any(k in c for m in present for c in methods[m])]
        means = {m: _mean_std([c[headline] for c in methods[m]])[0] for m in present}
        pick = max if higher else min
        best = pick(present, key=means.get)
        seeded = [m for m in present if len(methods[m]) >= 2]
        reference = pick(seeded, key=means.get) if seeded else best
        lines += [
            "",
            f"**{name}** ({task.get('steps') or 'each candidate its own'} steps per cell; "
            f"headline: {STUDY_COLUMNS[headline][0]}, {'higher' if higher else 'lower'} is better)",
            "",
            "| method | n | "
            + " | ".join(STUDY_COLUMNS[k][0] for k in columns)
            + f" | {STUDY_COLUMNS[headline][0]} per seed "
            "| vs best |",
            "|---|---|" + "---|" * len(columns) + "---|---|",
        ]
        reference_values = [c[headline] for c in methods[reference]]
        for method in present:
            cells = sorted(methods[method], key=lambda c: c["seed"])
            row = [method, str(len(cells))]
            for key in columns:
                form = STUDY_COLUMNS[key][1]
                if key == "train_seconds" and len(cpus) > 1:
                    per_cpu = [[c[key] for c in cells if key in c and cell_cpu(c, result) == cpu] for cpu in cpus]
                    row.append(" / ".join(form.format(_mean_std(v)[0]) if v else "-" for v in per_cpu))
                    continue
                values = [c[key] for c in cells if key in c]
                mean, std = _mean_std(values)
                row.append(form.format(mean) if len(values) == 1 else f"{form.format(mean)} +- {form.format(std)}")
            row.append(", ".join(f"{c['seed']}: {STUDY_COLUMNS[headline][1].format(c[headline])}" for c in cells))
            values = [c[headline] for c in cells]
            if method == reference:
                row.append("best" if reference == best else "best of n >= 2")
            elif len(values) < 2 or len(reference_values) < 2:
                row.append("(one seed)")
            else:
                apart = max(values) < min(reference_values) if higher else min(values) > max(reference_values)
                row.append("worse beyond the seed spread" if apart else "within the seed spread")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def study_picture(result: dict, path: Path) -> Path:
    """Per task: the headline score of every seed (dots) and their mean (bar), per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {name: {m: c for m, c in methods.items() if c} for name, methods in study_groups(result).items()}
    groups = {name: methods for name, methods in groups.items() if methods}
    tasks = {task["name"]: task for task in result.get("tasks", [])}
    figure, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for axis, (name, methods) in zip(axes[0], groups.items(), strict=True):
        metric = tasks.get(name, {}).get("metric", "psnr")
        labels = list(methods)
        for x, label in enumerate(labels):
            values = [c[metric] for c in methods[label]]
            axis.bar(x, sum(values) / len(values), color="#9ab", width=0.6)
            axis.scatter([x] * len(values), values, color="#234", zorder=3, s=14)
        axis.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        axis.set_title(f"{name}: {STUDY_COLUMNS[metric][0]}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def demo(result: dict) -> str:
    """``sesim demo`` per seed: layout mIoU, per-class colour error, classes lost, wall time."""
    runs = result["runs"]
    names = list(runs[0]["colour_error"])
    lines = [
        f"`python benchmarks/demo_picture.py` on {result['machine']}, {result['date']}: `sesim demo` in a fresh "
        "process per seed, wall time including start-up and data; colour error is the RGB distance of each class's "
        "mean colour to the ground-truth rendering's; lost: test images on which the class took another's colour.",
        "",
        "| seed | steps | layout mIoU (untrained -> trained) | "
        + " | ".join(f"{n} error / lost" for n in names)
        + " | seconds |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for run in runs:
        cells = [f"{run['colour_error'][n]:.0f} / {run['lost'][n]}" for n in names]
        lines.append(f"| {run['seed']} | {run['steps']} | {run['untrained']:.3f} -> {run['trained']:.3f} | "
                     + " | ".join(cells) + f" | {run['command_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def memory(result: dict) -> str:
    facts, rows = result["machine"], result["rows"]
    device = facts.get("device_name") or f"{facts['cpu']} ({facts['threads']} threads)"
    lines = [
        f"`benchmarks/memory.py`, {device}, torch {facts['torch']}, {facts['date']}: each cell is `sesim train "
        "PRESET --probe` in a fresh process (the paper's networks, VGG16 taps; "
        f"{result['warmup']} warm-up step, median of {result['measured']}); peak = the process's peak resident "
        "memory on a CPU, the allocator's peak on a GPU." + (f" {result['note']}" if result.get("note") else ""),
        "",
        "| method | crop | batch | peak | images/s | with activation checkpointing: peak | images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    cells = {(r["method"], r["size"], r["batch"], r["activation_checkpointing"]): r for r in rows}

    def shown(row: dict | None) -> str:
        if row is None:
            return "- | -"
        if "out_of_memory" in row:
            return "out of memory | -"
        return f"{row['peak_gib']:.2f} GiB | {row['images_per_s']:.3g}"

    for method, size, batch, checkpointing in cells:
        if checkpointing:
            continue
        plain, kept = cells[(method, size, batch, False)], cells.get((method, size, batch, True))
        lines.append(f"| {method} | {size} | {batch} | {shown(plain)} | {shown(kept)} |")
    return "\n".join(lines)


def probe(result: dict) -> str:
    facts = result["machine"]
    return (
        f"`benchmarks/probe_accuracy.py`, {facts['cpu']} ({facts['threads']} threads), torch {facts['torch']}: "
        f"`sesim train {result['preset']} --probe` at {result['crop']}x{result['crop']}, batch {result['batch']} "
        f"({result['data']} images), against a real run of the same configuration "
        f"({result['run_steps_timed']} timed steps):\n\n"
        "| | probe | real run | probe / run |\n|---|---|---|---|\n"
        f"| step time (median) | {result['probe_step_s']:.3f} s | {result['run_step_s']:.3f} s | "
        f"{result['step_ratio']:.2f} |\n"
        f"| peak memory (resident) | {result['probe_peak_gib']:.2f} GiB | {result['run_peak_gib']:.2f} GiB | "
        f"{result['memory_ratio']:.2f} |"
    )


TABLES = {
    "probe_cpu": ("probe_cpu", probe),
    "memory_cpu": ("memory_cpu", memory),
    "memory_gpu": ("memory_gpu", memory),
    "loss_cpu": ("loss_cpu", loss),
    "loss_gpu": ("loss_gpu", loss),
    "train_step_cpu": ("train_step_cpu", train_step),
    "train_step_gpu": ("train_step_gpu", train_step),
    "translate_cpu": ("translate_cpu", translate),
    "precision_cpu": ("precision_cpu", precision),
    "maps_eval": ("maps_eval", maps_eval),
    "maps_analysis": ("maps_analysis", maps_analysis),
    "maps_compare_cpu": ("maps_compare_cpu", maps_compare),
    "translate_large_cpu": ("translate_large_cpu", translate_large),
    "startup_cpu": ("startup_cpu", startup),
    "redesign_startup_cpu": ("redesign_startup_cpu", startup),
    "translate_gpu": ("translate_gpu", translate),
    "loop_gpu": ("loop_gpu", loop_gpu),
    "op_count_cpu": ("op_count_cpu", op_count),
    "maps_gpu": ("maps_gpu", maps_gpu),
    "study_layouts_cpu": ("study_layouts_cpu", study),
    "study_maps_cpu": ("study_maps_cpu", study),
    "study_demo_cpu": ("study_demo_cpu", study),
    "study_demo_colour_only_cpu": ("study_demo_colour_only_cpu", study),
    "demo_cpu": ("demo_cpu", demo),
}


def render(text: str) -> str:
    """``text`` with every known block replaced by the table built from its JSON."""

    def block(match: re.Match) -> str:
        name = match.group(1)
        source, build = TABLES[name]
        result = _load(source)
        body = build(result) if result is not None else f"(no `benchmarks/results/{source}.json` yet)"
        return f"<!-- table:{name} -->\n{body}\n<!-- /table:{name} -->"

    return re.sub(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", block, text, flags=re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--pictures", action="store_true", help="also draw docs/study_*.png from the study JSONs")
    args = parser.parse_args()
    if args.pictures:
        for name in ("study_layouts_cpu", "study_maps_cpu", "study_demo_cpu"):
            if (result := _load(name)) is not None and result["cells"]:
                print(f"wrote {study_picture(result, ROOT / 'docs' / f'{name}.png')}")
    stale = []
    for document in DOCUMENTS:
        text = document.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(document.name)
            if not args.check:
                document.write_text(rendered)
    if args.check and stale:
        print(f"stale tables in {', '.join(stale)}: run python benchmarks/tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
