"""The history buffer of generated images (Shrivastava et al., 2017) that the discriminator sees."""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """Holds up to ``size`` past fakes. Each incoming image is returned as is while the pool fills;
    afterwards, with probability 1/2, a stored image is returned in its place and replaced by it.

    The buffer, its fill count and the random draws live on the images' device and every decision
    is a device operation (no host sync, nothing decided on the CPU), so a training step that
    queries the pool can be captured as one CUDA graph. Randomness comes from the pool's own
    generator on that device; the whole state round-trips through :meth:`state_dict`, so resumed
    runs draw exactly what uninterrupted ones do.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size, self.seed = size, seed
        self.images: Tensor | None = None  # (size, C, H, W), allocated at the first query
        self.count: Tensor | None = None  # slots filled, a 0-d int64 on the same device
        self.rng: torch.Generator | None = None

    def _start(self, like: Tensor, state: Tensor | None = None) -> None:
        self.images = like.new_zeros((self.size, *like.shape[1:]))
        self.count = torch.zeros((), dtype=torch.int64, device=like.device)
        self.rng = torch.Generator(device=like.device).manual_seed(self.seed)
        if state is not None:
            self.rng.set_state(state)

    def query(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` fakes in, ``(B, C, H, W)`` out (each the image itself or a stored one)."""
        if self.size == 0:
            return images
        if self.images is None or self.images.shape[1:] != images.shape[1:] or self.images.device != images.device:
            self._start(images)
        out = []
        for image in images.detach():
            chance = torch.rand((), generator=self.rng, device=images.device)
            drawn = torch.randint(0, self.size, (1,), generator=self.rng, device=images.device)
            filling = self.count < self.size
            slot = torch.where(filling, self.count, drawn)  # (1,): the next free slot, or a drawn one
            stored = self.images.index_select(0, slot)[0]
            # Full: with probability 1/2 the incoming image takes the slot and the stored one goes out.
            swap = (chance > 0.5) > filling  # and not filling
            out.append(torch.where(swap, stored, image))
            self.images.index_copy_(0, slot, torch.where(swap.logical_or_(filling), image, stored)[None])
            self.count += filling
        return torch.stack(out) if len(out) > 1 else out[0][None]

    def state_dict(self) -> dict:
        if self.images is None:
            return {"images": torch.empty(0), "rng": torch.Generator().manual_seed(self.seed).get_state()}
        return {"images": self.images[: int(self.count)].cpu(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        images = state["images"]
        if not images.numel():
            self.images = self.count = self.rng = None
            return
        like = images[:1].to(device)
        try:
            self._start(like, state["rng"])
        except RuntimeError:  # a generator state of another device kind: continue from the seed
            self._start(like)
        self.images[: len(images)] = images.to(device)
        self.count.fill_(len(images))
