"""Looking inside the loss: the paper's aligned-vs-unaligned study (``sesim analyze``) and pictures
of similarity maps (``sesim visualize``). Imports nothing from ``sesim.training``."""
