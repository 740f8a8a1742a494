"""A `srgan train` process for torchrun in which rank 1 alone gets a non-finite loss at its 3rd update (the test's
injection: its pixel loss returns NaN). Used by tests/training/test_training.py; not a test module itself."""

from __future__ import annotations

import os
import sys

import torch

from srgan_lib import cli
from srgan_lib.training import trainer

if os.environ.get("RANK") == "1":
    original = trainer.Trainer.step

    def step(self, lr_u8, hr_u8, *args):  # type: ignore[no-untyped-def]
        self.injected_calls = getattr(self, "injected_calls", 0) + 1
        if self.injected_calls == 3:
            self.pixel = lambda sr, hr: sr.sum() * torch.tensor(float("nan"))
        return original(self, lr_u8, hr_u8, *args)

    trainer.Trainer.step = step  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
