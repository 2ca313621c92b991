"""LSeSim's similarity heads live with the loss they serve (:mod:`sesim.losses.heads`); this
name keeps older imports working."""

from sesim.losses.heads import SimilarityHeads, head_width

__all__ = ["SimilarityHeads", "head_width"]
