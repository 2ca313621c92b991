"""Metrics for translations."""

from sesim.metrics.paired import MapsScores, maps_protocol

__all__ = ["MapsScores", "maps_protocol"]
