"""Training pairs: HR images (modcropped) and their LR from the degrade stage, decoded once, cropped per batch.

A batch is a pure function of ``(seed, iteration)``: the image indices, crop positions and flips/rotations come from
a generator seeded with both. Resuming at iteration ``i`` therefore draws exactly the batches an uninterrupted run
would, with no sampler state to save, and under DDP each rank takes its slice of the same global batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from srgan_lib.data.degrade import sources_from_list
from srgan_lib.imageio import read_image
from srgan_lib.resize import modcrop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One training image: the HR file and the LR file made from it."""

    hr: Path
    lr: Path


def pairs_from_list(train_list: str | Path, lr_dir: str | Path) -> list[Pair]:
    """The (HR, LR) files of a training list, LR looked up under ``lr_dir`` by the degrade stage's naming."""
    lr_dir = Path(lr_dir)
    pairs = [Pair(src, lr_dir / rel) for src, rel in sources_from_list(train_list)]
    missing = [p.lr for p in pairs if not p.lr.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} LR image(s) missing under '{lr_dir}' (first: '{missing[0]}'); run the degrade stage "
            f"(`dvc repro degrade` or `srgan data degrade --list {train_list} --out {lr_dir}`)"
        )
    if not pairs:
        raise ValueError(f"training list '{train_list}' holds no images")
    return pairs


class PairedPatches:
    """Aligned random crops (LR ``hr_size/scale``, HR ``hr_size``) with optional flips and 90-degree rotations.

    Images are decoded once into uint8 arrays in memory; crops and augmentations work on uint8 and become float only
    on the training device.
    """

    def __init__(self, pairs: list[Pair], *, scale: int, hr_size: int, augment: bool, seed: int) -> None:
        if hr_size % scale:
            raise ValueError(f"hr_size {hr_size} is not divisible by the scale {scale}")
        self.scale, self.hr_size, self.lr_size = scale, hr_size, hr_size // scale
        self.augment, self.seed = augment, seed
        self.hr: list[np.ndarray] = []
        self.lr: list[np.ndarray] = []
        for pair in tqdm(pairs, desc="load training images", unit="img", leave=False, disable=None):
            hr = modcrop(read_image(pair.hr), scale)
            lr = read_image(pair.lr)
            if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                raise ValueError(
                    f"LR '{pair.lr}' is {lr.shape[1]}x{lr.shape[0]}, HR '{pair.hr}' modcropped is "
                    f"{hr.shape[1]}x{hr.shape[0]}: not x{scale}; re-run the degrade stage with scale {scale}"
                )
            if min(hr.shape[:2]) < hr_size:
                raise ValueError(
                    f"'{pair.hr}' is {hr.shape[1]}x{hr.shape[0]}, smaller than the HR crop {hr_size}; raise "
                    f"lists.min_size to at least {hr_size} so the lists stage rejects it"
                )
            self.hr.append(hr)
            self.lr.append(lr)

    def __len__(self) -> int:
        return len(self.hr)

    def batch(self, iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        """(LR, HR) uint8 tensors N x 3 x h x w: this rank's slice of the global batch of ``iteration``."""
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} does not split evenly over {world_size} processes")
        rng = np.random.default_rng([self.seed, iteration])
        idx = rng.integers(len(self.hr), size=batch_size)
        pos = rng.random((batch_size, 2))
        flips = rng.random((batch_size, 3)) < 0.5 if self.augment else np.zeros((batch_size, 3), bool)
        per = batch_size // world_size
        lrs, hrs = [], []
        for k in range(rank * per, (rank + 1) * per):
            lr_img, hr_img = self.lr[idx[k]], self.hr[idx[k]]
            y = int(pos[k, 0] * (lr_img.shape[0] - self.lr_size + 1))
            x = int(pos[k, 1] * (lr_img.shape[1] - self.lr_size + 1))
            lr_p = lr_img[y : y + self.lr_size, x : x + self.lr_size]
            s = self.scale
            hr_p = hr_img[y * s : y * s + self.hr_size, x * s : x * s + self.hr_size]
            lrs.append(_augment(lr_p, flips[k]))
            hrs.append(_augment(hr_p, flips[k]))
        to_t = lambda arrs: torch.from_numpy(np.ascontiguousarray(np.stack(arrs))).permute(0, 3, 1, 2)  # noqa: E731
        return to_t(lrs), to_t(hrs)


def _augment(img: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Horizontal flip, vertical flip, transpose (with the flips: all 8 dihedral transforms, as in ESRGAN)."""
    if flags[0]:
        img = img[:, ::-1]
    if flags[1]:
        img = img[::-1]
    if flags[2]:
        img = img.transpose(1, 0, 2)
    return img
