"""Trained generators as SR methods of the evaluation: uint8 LR in, uint8 SR out, through the tiled Upscaler.

Loading a checkpoint (and recognising its architecture) is :func:`srgan_lib.models.load_generator`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from srgan_lib.inference.upscaler import DEFAULT_GUARD_DB, Upscaler
from srgan_lib.models import Generator


class GeneratorMethod:
    """An :data:`srgan_lib.evaluation.measure.SRMethod` backed by a generator: uint8 LR -> uint8 SR (clamped, rounded).

    Inference goes through :class:`srgan_lib.inference.upscaler.Upscaler`, in fp32 unless ``precision`` says
    otherwise (the
    papers' tables are measured in fp32) and channels_last unless told not to, so a large test image is processed in
    tiles sized from the free memory (``tile=None``) instead of running out of memory; ``tile=0`` forces whole images.
    """

    def __init__(self, model: Generator | nn.Module, device: str | torch.device = "cpu",
                 value_range: tuple[float, float] | None = None, *, tile: int | None = None, tile_pad: int = 32,
                 precision: str = "fp32", channels_last: bool = True, guard_db: float = DEFAULT_GUARD_DB) -> None:
        # autotune off: the papers' numbers must not depend on a timing (the tile, when one is needed, comes from the
        # memory rule; Set5/Set14 images run whole); PyTorch always, so that they do not depend on which optional
        # runtime is installed either
        self.upscaler = Upscaler(model, device=device, tile=tile, tile_pad=tile_pad, precision=precision,
                                 value_range=value_range, channels_last=channels_last, guard_db=guard_db,
                                 autotune=False, backend="torch")
        self.precision, self.layout = self.upscaler.compute.precision, self.upscaler.compute.layout
        self.scale = self.upscaler.scale

    def describe_runs(self) -> str:
        """The precision each image actually ran in (the accuracy guard may redo an image in fp32)."""
        return self.upscaler.describe_runs()

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.upscaler.upscale_array(np.ascontiguousarray(lr, dtype=np.uint8))
