"""Training batches: aligned random crops from the prepared store (``store``), augmented on uint8, fed by a loader.

A batch is a pure function of ``(seed, iteration)``: the image indices, crop positions and flips/rotations come from
a generator seeded with both. Resuming at iteration ``i`` therefore draws exactly the batches an uninterrupted run
would, with no sampler state to save; worker processes may build batches in any order; and under DDP each rank takes
its slice of the same global batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from srgan_lib.data.store import StoreError, TrainingStore


class PairedPatches:
    """Aligned random crops (LR ``hr_size/scale``, HR ``hr_size``) with optional flips and 90-degree rotations,
    cut from a :class:`TrainingStore` and kept uint8 until they reach the training device."""

    def __init__(self, store: TrainingStore, *, hr_size: int, augment: bool, seed: int) -> None:
        scale = store.scale
        if hr_size % scale:
            raise ValueError(f"hr_size {hr_size} is not divisible by the scale {scale}")
        side, name = store.min_hr_side()
        if side < hr_size:
            raise StoreError(f"'{name}' is {side} pixels on its short side, smaller than the HR crop {hr_size}; "
                             f"raise lists.min_size to at least {hr_size} so the lists stage rejects it")
        self.store, self.scale, self.hr_size, self.lr_size = store, scale, hr_size, hr_size // scale
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.store)

    def batch(self, iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        """(LR, HR) uint8 tensors N x 3 x h x w: this rank's slice of the global batch of ``iteration``."""
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} does not split evenly over {world_size} processes")
        rng = self._generator(iteration)
        idx = self._images(rng, batch_size)
        pos = rng.random((batch_size, 2))
        flips = rng.random((batch_size, 3)) < 0.5 if self.augment else np.zeros((batch_size, 3), bool)
        per, s, n = batch_size // world_size, self.scale, self.lr_size
        lrs = np.empty((per, n, n, 3), np.uint8)
        hrs = np.empty((per, n * s, n * s, 3), np.uint8)
        for j, k in enumerate(range(rank * per, (rank + 1) * per)):
            lr_img, hr_img = self.store.lr(idx[k]), self.store.hr(idx[k])
            y = int(pos[k, 0] * (lr_img.shape[0] - n + 1))
            x = int(pos[k, 1] * (lr_img.shape[1] - n + 1))
            lrs[j] = augment(lr_img[y:y + n, x:x + n], flips[k])
            hrs[j] = augment(hr_img[y * s:(y + n) * s, x * s:(x + n) * s], flips[k])
        return torch.from_numpy(lrs).permute(0, 3, 1, 2), torch.from_numpy(hrs).permute(0, 3, 1, 2)

    def _generator(self, iteration: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, iteration])

    def _images(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """The store indices of a batch: the first draw of the iteration's generator (:meth:`batch`, :meth:`own_lr`)."""
        return rng.integers(len(self.store), size=batch_size)

    def own_lr(self, iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """Which samples of this rank's slice of ``iteration``'s batch come from images with their own LR (paired
        data): the same draw of image indices as :meth:`batch`, without the pixels."""
        idx = self._images(self._generator(iteration), batch_size)
        per = batch_size // world_size
        return torch.tensor([self.store.paired(int(i)) for i in idx[rank * per:(rank + 1) * per]])

    @property
    def any_paired(self) -> bool:
        return any(self.store.paired(i) for i in range(len(self.store)))


def augment(img: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Horizontal flip, vertical flip, transpose (with the flips: all 8 dihedral transforms, as in ESRGAN)."""
    if flags[0]:
        img = img[:, ::-1]
    if flags[1]:
        img = img[::-1]
    if flags[2]:
        img = img.transpose(1, 0, 2)
    return img


class IterationBatches(Dataset):
    """Item ``i`` is the batch of iteration ``i`` (any order, any process: batches are pure functions)."""

    def __init__(self, patches: PairedPatches, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.patches, self.batch_size, self.rank, self.world_size = patches, batch_size, rank, world_size

    def __getitem__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.patches.batch(iteration, self.batch_size, self.rank, self.world_size)


def batch_loader(patches: PairedPatches, iterations: range, batch_size: int, *, workers: int, pin_memory: bool,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """The batches of ``iterations`` in order: built in ``workers`` processes (0: inline) ahead of the step, in
    page-locked memory when ``pin_memory`` so the host-to-device copy runs asynchronously."""
    return DataLoader(IterationBatches(patches, batch_size, rank, world_size), batch_size=None, sampler=iterations,
                      num_workers=workers, pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                      persistent_workers=False)
