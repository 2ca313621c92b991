"""Losses: the spatially-correlative loss as pure functions and as a Module; PatchNCE; InfoNCE; LSGAN."""

from sesim.losses.info_nce import info_nce
from sesim.losses.modules import SpatialCorrelativeLoss
from sesim.losses.patch_nce import patch_nce_loss
from sesim.losses.spatial import (
    COMPARISONS,
    contrastive_spatial_loss,
    sample_query_ids,
    self_similarity,
    spatial_correlative_loss,
    top_quarter_mask,
    window_key_ids,
)

__all__ = [
    "COMPARISONS",
    "SpatialCorrelativeLoss",
    "contrastive_spatial_loss",
    "info_nce",
    "patch_nce_loss",
    "sample_query_ids",
    "self_similarity",
    "spatial_correlative_loss",
    "top_quarter_mask",
    "window_key_ids",
]
