"""Validation during training: PSNR-Y / SSIM-Y of the generator on a few held-out images, one whole-image forward each.

Deliberately not the production :class:`srgan_lib.inference.upscaler.Upscaler` (tiles, accuracy guard, formats): a
validation
crop fits in one forward, and keeping the upscaler out of the training stage's import closure means a change to the
upscaler (a TIFF tag, a tile rule) never retrains a network. The conversions are the evaluation's: [0, 1] input,
output clamped to the generator's range and rounded to uint8; the metrics are the papers' (shave = scale).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from srgan_lib.data.lists import own_lr_file, read_list
from srgan_lib.data.resize import downsample, modcrop, upsample
from srgan_lib.hardware import ComputeFormat
from srgan_lib.io.images import read_image
from srgan_lib.metrics.niqe import niqe, niqe_fits
from srgan_lib.metrics.psnr_ssim import psnr, ssim
from srgan_lib.models import to_unit


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray, out_range: tuple[float, float], device: torch.device,
                  compute: ComputeFormat) -> np.ndarray:
    """HxWx3 uint8 LR -> uint8 SR: one forward of the whole image in ``compute``' precision and memory format."""
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].to(device).float().div_(255)
    x = x.contiguous(memory_format=compute.memory_format)
    autocast = (torch.autocast(device.type, dtype=compute.amp_dtype) if compute.amp_dtype is not None
                else contextlib.nullcontext())
    with autocast:
        y = model(x).float()
    y = to_unit(y, out_range).clamp_(0, 1)[0].permute(1, 2, 0).mul_(255).round_()
    return y.cpu().numpy().astype(np.uint8)


class Validator:
    """PSNR-Y / SSIM-Y (the papers' conventions, shave = scale) and, on crops of at least two NIQE blocks, NIQE, on
    centre crops of a few held-out images. The LR is the list's own when it has one (a real-world set such as
    ``Set5-RW``), else made with the kernel the training LR was made with (``degrade.kernel``)."""

    def __init__(self, val_list: str, n_images: int, crop: int, scale: int, kernel: str = "matlab") -> None:
        self.scale = scale
        self.pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
        if n_images == 0:
            return
        if not Path(val_list).is_file():
            raise FileNotFoundError(f"validation list '{val_list}' not found (train.val_list / val_list_realworld); "
                                    "run the lists (or realworld) stage")
        data = read_list(val_list)
        for entry in data["images"][:n_images]:
            hr = modcrop(read_image(entry["path"]), scale)
            own = own_lr_file(data, entry["name"], val_list)
            lr = read_image(own) if own else None
            if lr is not None and (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
                raise ValueError(f"LR '{own}' is {lr.shape[1]}x{lr.shape[0]}; expected HR/{scale} of '{entry['path']}'")
            if crop:
                c = min(crop, *hr.shape[:2]) // scale * scale
                y, x = (hr.shape[0] - c) // 2 // scale * scale, (hr.shape[1] - c) // 2 // scale * scale
                hr = hr[y : y + c, x : x + c]
                if lr is not None:
                    lr = lr[y // scale : (y + c) // scale, x // scale : (x + c) // scale]
            self.pairs.append((entry["name"], lr if lr is not None else downsample(hr, scale, kernel), hr))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def run(self, model: nn.Module, out_range: tuple[float, float], device: torch.device,
            compute: ComputeFormat) -> tuple[dict, np.ndarray]:
        """Mean PSNR-Y/SSIM-Y (and NIQE where every crop is large enough) over the images, and a side-by-side
        (LR enlarged bicubically | SR | HR) picture of the first one, in the training run's precision and memory format
        (the model's own)."""
        was_training = model.training
        model.eval()
        scores: dict[str, list[float]] = {"psnr_y": [], "ssim_y": [], "niqe": []}
        picture = None
        for i, (_, lr, hr) in enumerate(self.pairs):
            sr = super_resolve(model, lr, out_range, device, compute)
            scores["psnr_y"].append(psnr(sr, hr, space="y", shave=self.scale))
            scores["ssim_y"].append(ssim(sr, hr, space="y", shave=self.scale))
            if niqe_fits(sr, shave=self.scale):
                scores["niqe"].append(niqe(sr, shave=self.scale))
            if i == 0:
                gap = np.full((hr.shape[0], 4, 3), 255, np.uint8)
                picture = np.concatenate([upsample(lr, self.scale, "bicubic"), gap, sr, gap, hr], axis=1)
        model.train(was_training)
        if len(scores["niqe"]) < len(self.pairs):  # a crop too small: no NIQE rather than a mean of some images
            del scores["niqe"]
        return {k: float(np.nanmean(v)) for k, v in scores.items()}, picture
