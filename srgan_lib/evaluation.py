"""Benchmark evaluation: super-resolve every image of every test set and measure it with the papers' metrics.

A method is any callable mapping an LR uint8 RGB array to an SR array ``scale`` times larger. The baselines are
registered explicitly in :data:`BASELINES`; trained generators plug in the same way. HR images are modcropped to the
scale; LR is generated with the project's MATLAB bicubic (``lr_source="generate"``) or read from the set's
``LR_bicubic/X{scale}`` folder (``lr_source="folder"``). Whole images are evaluated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from srgan_lib.data.lists import hr_folder, read_list
from srgan_lib.imageio import iter_image_files, read_image
from srgan_lib.metrics.niqe import niqe
from srgan_lib.metrics.psnr_ssim import psnr, ssim
from srgan_lib.resize import Kernel, downsample, modcrop, upsample

log = logging.getLogger(__name__)
SRMethod = Callable[[np.ndarray], np.ndarray]
LRSource = Literal["generate", "folder"]
METRICS: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe")
CONVENTIONS = {
    "psnr_y": "PSNR (dB) on BT.601 Y (16-235, float), shave = scale: the papers' tables",
    "ssim_y": "SSIM on BT.601 Y, 11x11 Gaussian window sigma 1.5, valid region, shave = scale: the papers' tables",
    "psnr_rgb": "PSNR (dB) on RGB, shave = scale: what BasicSR's model zoo reports",
    "ssim_rgb": "SSIM averaged over R, G, B, shave = scale",
    "niqe": "NIQE (MATLAB R2021a-calibrated) on the SR image's Y, shave = scale (PIRM 2018); lower is better",
}
# Metrics the papers report that this release cannot compute yet, with the reason (recorded, never estimated).
UNAVAILABLE: dict[str, str] = {
    "ma": "Ma et al. (2017) no-reference score not implemented in this release (needs the authors' trained model)",
    "pi": "perceptual index ((10 - Ma) + NIQE) / 2 needs Ma's score, which is not implemented in this release",
}


def bicubic_method(scale: int) -> SRMethod:
    """MATLAB bicubic upsampling, the papers' baseline row."""
    return lambda lr: upsample(lr, scale, "bicubic")


def nearest_method(scale: int) -> SRMethod:
    """Nearest-neighbour upsampling (pixel replication)."""
    return lambda lr: upsample(lr, scale, "nearest")


BASELINES: dict[str, Callable[[int], SRMethod]] = {"bicubic": bicubic_method, "nearest": nearest_method}


@dataclass(frozen=True)
class TestImage:
    """One test image: its name, HR file and, where the set provides it, the distributed LR file."""

    __test__ = False  # not a pytest test class

    name: str
    hr: Path
    lr: Path | None


def lr_folder(root: str | Path, scale: int) -> Path:
    """Where a benchmark-layout set keeps its distributed LR: ``root/LR_bicubic/X{scale}``."""
    return Path(root) / "LR_bicubic" / f"X{scale}"


def test_set_from_folder(root: str | Path, scale: int) -> list[TestImage]:
    """The images of a test set folder laid out as ``root/HR`` (+ optional ``root/LR_bicubic/X{scale}``)."""
    hr_dir, lr_dir = hr_folder(root), lr_folder(root, scale)
    images = []
    for p in iter_image_files(hr_dir, recursive=False):
        lr = lr_dir / f"{p.stem}.png"
        images.append(TestImage(p.stem, p, lr if lr.exists() else None))
    if not images:
        raise FileNotFoundError(f"no images in test set folder '{hr_dir}'")
    return images


def test_set_from_list(list_path: str | Path, scale: int) -> tuple[str, list[TestImage]]:
    """(set name, images) from a test-split data list; the LR folder is looked up beside the list's root."""
    data = read_list(list_path)
    root = Path(data["roots"][0])
    lr_dir = lr_folder(root, scale)
    images = []
    for entry in data["images"]:
        lr = lr_dir / f"{entry['name']}.png"
        images.append(TestImage(entry["name"], Path(entry["path"]), lr if lr.exists() else None))
    return data["split"], images


def _load_pair(img: TestImage, scale: int, lr_source: LRSource, kernel: Kernel) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_image(img.hr), scale)
    if lr_source == "generate":
        return downsample(hr, scale, kernel), hr
    if img.lr is None:
        raise FileNotFoundError(
            f"no distributed LR image for '{img.hr}' (looked in its set's LR_bicubic/X{scale}/); "
            "use --lr-source generate"
        )
    lr = read_image(img.lr)
    if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise ValueError(f"LR '{img.lr}' is {lr.shape[1]}x{lr.shape[0]}; expected HR/{scale} of '{img.hr}'")
    return lr, hr


def measure(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    """Every full-reference and no-reference metric of one SR image, with the papers' conventions."""
    return {
        "psnr_y": psnr(sr, hr, space="y", shave=scale),
        "ssim_y": ssim(sr, hr, space="y", shave=scale),
        "psnr_rgb": psnr(sr, hr, space="rgb", shave=scale),
        "ssim_rgb": ssim(sr, hr, space="rgb", shave=scale),
        "niqe": niqe(sr, shave=scale),
    }


def evaluate_set(
    method: SRMethod,
    images: list[TestImage],
    *,
    scale: int = 4,
    lr_source: LRSource = "generate",
    kernel: Kernel = "matlab",
    desc: str = "evaluate",
) -> dict:
    """Per-image metrics and their means over one test set."""
    per_image: dict[str, dict[str, float]] = {}
    for img in tqdm(images, desc=desc, unit="img", leave=False, disable=None):
        lr, hr = _load_pair(img, scale, lr_source, kernel)
        sr = np.asarray(method(lr))
        if sr.shape != hr.shape:
            raise ValueError(f"method returned {sr.shape} for '{img.name}', expected {hr.shape}")
        per_image[img.name] = measure(sr, hr, scale)
    means = {m: float(np.mean([v[m] for v in per_image.values()])) for m in METRICS}
    if any(math.isinf(v) for v in means.values()):
        log.warning("an SR image equals its HR image exactly: PSNR is infinite")
    return {**means, "n_images": len(per_image), "images": per_image}


def evaluate(
    method_name: str,
    method: SRMethod,
    sets: dict[str, list[TestImage]],
    *,
    scale: int = 4,
    lr_source: LRSource = "generate",
    kernel: Kernel = "matlab",
) -> dict[str, dict]:
    """Evaluate one method on several sets: set name -> metrics (means, ``n_images``, per-image values, settings)."""
    out = {}
    for name, images in sets.items():
        res = evaluate_set(
            method, images, scale=scale, lr_source=lr_source, kernel=kernel, desc=f"{method_name}@{name}"
        )
        out[name] = {**res, "model": method_name, "scale": scale, "lr_source": lr_source, "lr_kernel": kernel}
    return out
