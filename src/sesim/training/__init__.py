"""The engine: loop, checkpoints, logging."""
