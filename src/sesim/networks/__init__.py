"""What is trained: generators, discriminators, similarity heads."""

from sesim.networks.discriminators import PatchDiscriminator
from sesim.networks.generators import ResnetGenerator
from sesim.networks.heads import SimilarityHeads, head_width

__all__ = ["PatchDiscriminator", "ResnetGenerator", "SimilarityHeads", "head_width"]
