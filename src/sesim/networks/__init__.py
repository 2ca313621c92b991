"""What is trained: generators, discriminators, similarity heads, patch projectors."""

from sesim.networks.discriminators import PatchDiscriminator
from sesim.networks.generators import ResnetGenerator
from sesim.networks.heads import SimilarityHeads, head_width
from sesim.networks.projector import PatchProjector

__all__ = ["PatchDiscriminator", "PatchProjector", "ResnetGenerator", "SimilarityHeads", "head_width"]
