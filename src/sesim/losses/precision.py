"""Precision rule shared by the losses: half-precision values (from autocast) are promoted to
float32 before a reduction; float32 and float64 are kept as they are, so a float64 reference
run (``train.precision=fp64``) stays float64 end to end."""

from __future__ import annotations

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def at_least_float32(values: Tensor) -> Tensor:
    """``values`` in float32 if it is float16/bfloat16, else unchanged.

    >>> at_least_float32(torch.ones(2, dtype=torch.bfloat16)).dtype
    torch.float32
    >>> at_least_float32(torch.ones(2, dtype=torch.float64)).dtype
    torch.float64
    """
    return values.float() if values.dtype in LOW_PRECISION else values
