"""Losses: the spatially-correlative loss as pure functions and as a Module."""

from sesim.losses.modules import SpatialCorrelativeLoss
from sesim.losses.spatial import (
    contrastive_spatial_loss,
    sample_query_ids,
    self_similarity,
    spatial_correlative_loss,
    window_key_ids,
)

__all__ = [
    "SpatialCorrelativeLoss",
    "contrastive_spatial_loss",
    "sample_query_ids",
    "self_similarity",
    "spatial_correlative_loss",
    "window_key_ids",
]
