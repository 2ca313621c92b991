"""Metrics for translations: paired (maps protocol, PSNR, SSIM) and distribution (FID, KID, offline FD)."""

from sesim.metrics.paired import MapsScores, maps_protocol, psnr_ssim

__all__ = ["MapsScores", "maps_protocol", "psnr_ssim"]
