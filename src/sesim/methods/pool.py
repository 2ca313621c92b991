"""The history buffer of generated images (Shrivastava et al., 2017) that the discriminator sees."""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """Holds up to ``size`` past fakes. Each incoming image is returned as is while the pool fills;
    afterwards, with probability 1/2, a stored image is returned in its place and replaced by it.

    Randomness comes from the pool's own generator, and the whole state round-trips through
    :meth:`state_dict`, so resumed runs draw exactly what uninterrupted ones do.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(1, generator=self.generator)) > 0.5:
                index = int(torch.randint(0, self.size, (1,), generator=self.generator))
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        stacked = torch.stack(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [image.to(device) for image in state["images"]] if state["images"].numel() else []
        self.generator.set_state(state["rng"])
