"""Tiny data and configs shared by the training tests."""

from pathlib import Path

from sesim.config import load_config
from sesim.data.synthetic import write_domains

TINY = [
    "data.load_size=36", "data.crop_size=32", "data.workers=0",
    "model.generator.ngf=8", "model.generator.blocks=1", "model.discriminator.ndf=8", "model.discriminator.layers=2",
    "loss.backbone=vgg16", "loss.backbone_weights=random", "loss.taps=[relu1_2,relu2_1]", "loss.window=8",
    "loss.num_queries=16", "train.batch_size=2", "train.deterministic=true", "train.device=cpu",
    "log.every=1", "log.sample_every=2", "log.checkpoint_every=3", "log.progress=false", "log.tensorboard=false",
]  # fmt: skip


def tiny_data(root: Path) -> Path:
    return write_domains(root, train=6, test=2, size=40, seed=1)


def tiny_config(preset: str, data: Path, out: Path, *extra: str):
    return load_config(preset, [*TINY, f"data.root={data}", f"log.out_dir={out}", *extra])
