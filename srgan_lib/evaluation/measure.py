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

from srgan_lib.data.lists import OWN_LR, hr_folder, own_lr_file, read_list
from srgan_lib.data.resize import Kernel, downsample, modcrop, upsample
from srgan_lib.io.images import iter_image_files, read_image, write_png
from srgan_lib.metrics import NAMES
from srgan_lib.metrics.lpips import LPIPSMetric
from srgan_lib.metrics.ma import MaModel, perceptual_index
from srgan_lib.metrics.niqe import niqe
from srgan_lib.metrics.psnr_ssim import colour_cast, psnr, rmse, ssim

log = logging.getLogger(__name__)
SRMethod = Callable[[np.ndarray], np.ndarray]
LRSource = Literal["generate", "folder"]


def unavailable_reasons(reason: str) -> dict[str, str]:
    """The ``unavailable`` record for Ma and PI when the Ma model cannot be used (``reason`` says why)."""
    return {"ma": reason, "pi": f"needs Ma's score: {reason}"}


def bicubic_method(scale: int) -> SRMethod:
    """MATLAB bicubic upsampling, the papers' baseline row."""
    return lambda lr: upsample(lr, scale, "bicubic")


def nearest_method(scale: int) -> SRMethod:
    """Nearest-neighbour upsampling (pixel replication)."""
    return lambda lr: upsample(lr, scale, "nearest")


BASELINES: dict[str, Callable[[int], SRMethod]] = {"bicubic": bicubic_method, "nearest": nearest_method}
# what each baseline is, for the report's "What each row is"
BASELINE_CONFIGURATIONS = {"bicubic": "MATLAB bicubic upsampling (imresize, a = -0.5)",
                           "nearest": "nearest-neighbour upsampling (pixel replication)"}


@dataclass(frozen=True)
class TestImage:
    """One test image: its name, HR file and, where the set provides it, the distributed LR file."""

    __test__ = False  # not a pytest test class

    name: str
    hr: Path
    lr: Path | None
    own_lr: bool = False  # the set's own LR (a real-world set): read whatever the LR source says


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
    own = OWN_LR in data
    images = []
    for entry in data["images"]:
        lr = own_lr_file(data, entry["name"], list_path) or lr_folder(root, scale) / f"{entry['name']}.png"
        images.append(TestImage(entry["name"], Path(entry["path"]), lr if lr.exists() else None, own))
    return data["split"], images


def _load_pair(img: TestImage, scale: int, lr_source: LRSource, kernel: Kernel) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_image(img.hr), scale)
    if lr_source == "generate" and not img.own_lr:
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


def measure(sr: np.ndarray, hr: np.ndarray, scale: int, ma_model: MaModel | None = None,
            lpips_model: LPIPSMetric | None = None) -> dict[str, float]:
    """Every full-reference and no-reference metric of one SR image, with the papers' conventions; Ma and PI only
    with the authors' model, LPIPS only with its real weights."""
    out = {
        "psnr_y": psnr(sr, hr, space="y", shave=scale),
        "ssim_y": ssim(sr, hr, space="y", shave=scale),
        "psnr_rgb": psnr(sr, hr, space="rgb", shave=scale),
        "ssim_rgb": ssim(sr, hr, space="rgb", shave=scale),
        "rmse_y": rmse(sr, hr, space="y", shave=scale),
        "niqe": niqe(sr, shave=scale),
    }
    out["cast_r"], out["cast_g"], out["cast_b"] = colour_cast(sr, hr, shave=scale)
    if ma_model is not None:
        out["ma"] = ma_model.score(sr, shave=scale)
        out["pi"] = perceptual_index(out["ma"], out["niqe"])
    if lpips_model is not None:
        out["lpips"] = lpips_model.score(sr, hr, shave=scale)
    return out


def evaluate_set(
    method: SRMethod,
    images: list[TestImage],
    *,
    scale: int = 4,
    lr_source: LRSource = "generate",
    kernel: Kernel = "matlab",
    desc: str = "evaluate",
    ma_model: MaModel | None = None,
    lpips_model: LPIPSMetric | None = None,
    sr_dir: str | Path | None = None,
) -> dict:
    """Per-image metrics and their means over one test set; with ``sr_dir`` the SR images are kept as PNGs there
    (``<sr_dir>/<image>.png``: the report's comparison figures crop them)."""
    per_image: dict[str, dict[str, float]] = {}
    for img in tqdm(images, desc=desc, unit="img", leave=False, disable=None):
        lr, hr = _load_pair(img, scale, lr_source, kernel)
        sr = np.asarray(method(lr))
        if sr.shape != hr.shape:
            raise ValueError(f"method returned {sr.shape} for '{img.name}', expected {hr.shape}")
        per_image[img.name] = measure(sr, hr, scale, ma_model, lpips_model)
        if sr_dir is not None:
            # zlib level 1: lossless like any level, ~4x faster to write than 6 and ~13% larger (the report crops these)
            write_png(Path(sr_dir) / f"{img.name}.png", sr.astype(np.uint8, copy=False), compress_level=1)
    present = [m for m in NAMES if all(m in v for v in per_image.values())]
    means = {m: float(np.mean([v[m] for v in per_image.values()])) for m in present}
    if any(math.isinf(v) for v in means.values()):
        log.warning("an SR image equals its HR image exactly: PSNR is infinite")
    own = {"lr_files": {i.name: str(i.lr) for i in images}} if all(i.own_lr for i in images) else {}
    return {**means, "n_images": len(per_image), "images": per_image, "files": {i.name: str(i.hr) for i in images},
            **own}


def evaluate(
    method_name: str,
    method: SRMethod,
    sets: dict[str, list[TestImage]],
    *,
    scale: int = 4,
    lr_source: LRSource = "generate",
    kernel: Kernel = "matlab",
    ma_model: MaModel | None = None,
    ma_unavailable: str = "no Ma model given",
    lpips_model: LPIPSMetric | None = None,
    lpips_unavailable: str = "no LPIPS weights given",
    sr_dir: str | Path | None = None,
) -> dict[str, dict]:
    """Evaluate one method on several sets: set name -> metrics (means, ``n_images``, per-image values, settings).

    Without ``ma_model`` each set records ``unavailable`` = {metric: reason} for Ma and PI instead of a number, and
    so for LPIPS without ``lpips_model``."""
    out = {}
    for name, images in sets.items():
        res = evaluate_set(
            method, images, scale=scale, lr_source=lr_source, kernel=kernel, desc=f"{method_name}@{name}",
            ma_model=ma_model, lpips_model=lpips_model, sr_dir=None if sr_dir is None else Path(sr_dir) / name,
        )
        unavailable = {} if ma_model is not None else unavailable_reasons(ma_unavailable)
        if lpips_model is None:
            unavailable["lpips"] = lpips_unavailable
        own = all(i.own_lr for i in images)
        out[name] = {**res, "model": method_name, "scale": scale, "lr_source": "own" if own else lr_source,
                     "lr_kernel": "n/a (the set's own LR)" if own else kernel, "unavailable": unavailable}
        if ma_model is not None:
            out[name]["ma_model"] = {"path": ma_model.source, "sha256": ma_model.sha256}
        if lpips_model is not None:
            out[name]["lpips_model"] = {"net": lpips_model.net, "linear": lpips_model.linear,
                                        "backbone": lpips_model.backbone}
    return out
