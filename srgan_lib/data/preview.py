"""A picture of what a real-world recipe learns from: N training crops beside the LR the degradation chain makes of
them (drawn exactly as training draws them: (seed, iteration, sample)), each with its drawn parameters as a caption,
so the settings of params.yaml's ``degradation`` section can be judged by eye before hours of training."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from srgan_lib.data.degradations import DegradationSettings, degrade_batch, to_uint8
from srgan_lib.io.images import ImageReadError, iter_image_files, read_image, write_json, write_png

log = logging.getLogger(__name__)

CAPTION_WIDTH = 480
MIN_SIDE = 128  # crops smaller than this are shown enlarged (nearest neighbour), so the artifacts stay visible


@dataclass(frozen=True)
class Preview:
    """The picture and each sample's draws (as the debug log writes them)."""

    picture: np.ndarray
    draws: list[dict[str, Any]]


def crops_from_folder(folder: str | Path, n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops (uint8, N x 3 x H x W) from the photographs of ``folder`` (a user's,
    when no training store is built yet): files taken in a seeded random order and decoded only until ``n`` usable
    ones are found (fewer: they are cropped again); unreadable or too small ones are skipped and named."""
    files = list(iter_image_files(Path(folder)))
    rng = np.random.default_rng(seed)
    images = []
    for path in (files[int(i)] for i in rng.permutation(len(files))):
        try:
            img = read_image(path)
        except ImageReadError as exc:
            log.warning("preview: skipped %s: %s", path, exc)
            continue
        if min(img.shape[:2]) < size:
            log.warning("preview: skipped %s: smaller than the %d-pixel crop", path, size)
            continue
        images.append(img)
        if len(images) == n:
            break
    if not images:
        raise FileNotFoundError(f"no image of at least {size} x {size} pixels in '{folder}' (of {len(files)} files)")
    out = []
    for k in range(n):
        img = images[k % len(images)]
        y, x = (int(rng.integers(img.shape[i] - size + 1)) for i in (0, 1))
        out.append(torch.from_numpy(np.ascontiguousarray(img[y:y + size, x:x + size])).permute(2, 0, 1))
    return torch.stack(out)


def preview(hr_u8: torch.Tensor, settings: DegradationSettings, seed: int, iteration: int) -> Preview:
    """HR crops (uint8, N x 3 x H x W) through the chain as training draws them at ``iteration``; one row per sample:
    HR | LR (enlarged by the scale, nearest) | the draws."""
    hr = hr_u8.float() / 255
    lr, d = degrade_batch(hr, settings, seed, iteration)
    h, w = hr.shape[-2:]
    zoom = max(1, -(-MIN_SIDE // min(h, w)))
    rows = []
    font = ImageFont.load_default(size=13)
    for i in range(hr.shape[0]):
        a = _enlarged(hr[i], zoom)
        b = _enlarged(lr[i], settings.scale * zoom)[:a.shape[0], :a.shape[1]]
        caption = Image.new("RGB", (CAPTION_WIDTH, a.shape[0]), "white")
        ImageDraw.Draw(caption).multiline_text((6, 6), f"sample {i}\n{d.caption(i)}", fill="black", font=font,
                                               spacing=4)
        gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([a, gap, b, gap, np.asarray(caption)], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    body = np.concatenate(rows[:-1])
    head = Image.new("RGB", (body.shape[1], 26), "white")
    ImageDraw.Draw(head).text((6, 6), f"HR | degraded LR (x{settings.scale}, nearest) | draws  -  seed "
                              f"{seed}, iteration {iteration}", fill="black", font=font)
    return Preview(np.concatenate([np.asarray(head), body]), [d.describe(i) for i in range(hr.shape[0])])


def _enlarged(x: torch.Tensor, factor: int) -> np.ndarray:
    """A CxHxW image in [0, 1] as HxWx3 uint8, each pixel a ``factor`` x ``factor`` block (nearest neighbour)."""
    return to_uint8(x).permute(1, 2, 0).numpy().repeat(factor, 0).repeat(factor, 1)


def write_preview(p: Preview, out: str | Path) -> tuple[Path, Path]:
    """The picture as PNG and the draws as JSON beside it (atomic writes)."""
    out = Path(out)
    write_png(out, p.picture)
    draws = out.with_suffix(".json")
    write_json(draws, {"samples": p.draws})
    return out, draws
