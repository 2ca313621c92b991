"""SeSim: the spatially-correlative loss (Zheng, Cham, Cai, CVPR 2021) and unpaired translation around it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sesim")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"
