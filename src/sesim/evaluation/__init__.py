"""Scoring translations: distribution metrics (FID/KID, offline FD), paired metrics (maps protocol,
PSNR, SSIM), LPIPS diversity, the Cityscapes segmentation score and its DRN (``sesim eval``,
``sesim segscore``, validation while training). Imports nothing from ``sesim.training``."""
