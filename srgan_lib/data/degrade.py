"""LR generation stage: modcrop each HR image to a multiple of the scale and downsample it with bicubic, or, for a
training folder that brings its own LR (``<folder>/HR/x.png`` beside ``<folder>/LR/X<scale>/x.png``: camera pairs
such as RealSR or DRealSR), take that LR as it is (checked to be the modcropped HR's size / scale) and mark the pair
``paired`` in the manifest, so real-world recipes can train on it.

Outputs mirror the inputs' relative paths as PNG under ``out_dir``. A ``manifest.json`` records, per output, the source
file's size and SHA-256 and the settings, so a re-run recomputes only new or changed images (incremental) and removes
outputs it made earlier whose source has gone; files it did not make are never touched. Content, never mtimes: the
manifest (a DVC output, and part of the training store's fingerprint) is the same bytes in every clone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srgan_lib.data.lists import hr_folder, read_list
from srgan_lib.data.resize import KERNELS, Kernel, downsample
from srgan_lib.io.images import file_sha256, iter_image_files, read_image, write_json, write_png

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass
class DegradeSummary:
    """What a degrade run did."""

    written: int = 0
    up_to_date: int = 0
    paired: int = 0  # of which the folder's own LR
    removed: int = 0
    out_dir: str = ""


def sources_from_folder(hr_dir: str | Path) -> list[tuple[Path, str]]:
    """(source path, output relative path) for every image under ``hr_dir`` (benchmark ``HR/`` layout accepted)."""
    root = hr_folder(hr_dir)
    return [(p, p.relative_to(root).with_suffix(".png").as_posix()) for p in iter_image_files(root)]


def sources_from_list(list_path: str | Path) -> list[tuple[Path, str]]:
    """(source path, output relative path) for every image of a data list, relative to its root folder."""
    data = read_list(list_path)
    roots = [hr_folder(r) for r in data["roots"]]
    out = []
    for entry in data["images"]:
        path = Path(entry["path"])
        root = next((r for r in roots if path.is_relative_to(r)), path.parent)
        out.append((path, path.relative_to(root).with_suffix(".png").as_posix()))
    return out


def _stamp(path: Path) -> dict[str, int | str]:
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def own_lr(src: Path, scale: int) -> Path | None:
    """The LR a training image brings along: ``<root>/LR/X<scale>/<stem>.<ext>`` for ``<root>/HR/<stem>.<ext>``
    (PNG looked for first, then the HR's own extension); None when there is none."""
    if src.parent.name != "HR":
        return None
    folder = src.parent.parent / "LR" / f"X{scale}"
    return next((p for p in (folder / f"{src.stem}.png", folder / src.name) if p.is_file()), None)


def _paired_lr(src: Path, lr_path: Path, scale: int) -> np.ndarray:
    hr = read_image(src)
    lr = read_image(lr_path)
    want = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != want:
        raise ValueError(f"LR '{lr_path}' is {lr.shape[1]}x{lr.shape[0]}, but its HR '{src}' ({hr.shape[1]}x"
                         f"{hr.shape[0]}) needs {want[1]}x{want[0]} at x{scale} (HR modcropped / scale); fix or remove "
                         "the pair")
    return lr


def degrade(
    sources: list[tuple[Path, str]], out_dir: str | Path, *, scale: int = 4, kernel: Kernel = "matlab"
) -> DegradeSummary:
    """Write the LR version of every source image to ``out_dir``; incremental through the manifest."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    out = Path(out_dir)
    settings = {"scale": scale, "kernel": kernel}
    manifest_path = out / MANIFEST
    old: dict = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            log.warning("ignoring unreadable %s; recomputing every image", manifest_path)
    old_items: dict = old.get("items", {}) if old.get("settings") == settings else {}
    summary = DegradeSummary(out_dir=str(out))
    items: dict[str, dict] = {}
    rels = [rel for _, rel in sources]
    if len(set(rels)) != len(rels):
        raise ValueError("two source images map to the same output name; give them distinct relative paths")
    for src, rel in tqdm(sources, desc="degrade", unit="img", leave=False, disable=None):
        stamp: dict = {"source": src.as_posix(), **_stamp(src)}
        lr_path = own_lr(src, scale)
        if lr_path is not None:
            stamp["paired"] = {"lr": lr_path.as_posix(), **_stamp(lr_path)}
            summary.paired += 1
        target = out / rel
        if old_items.get(rel) == stamp and target.exists():
            summary.up_to_date += 1
        else:
            write_png(target, downsample(read_image(src), scale, kernel) if lr_path is None
                      else _paired_lr(src, lr_path, scale))
            summary.written += 1
        items[rel] = stamp
    for rel in set(old.get("items", {})) - set(items):
        stale = out / rel
        if stale.exists():
            stale.unlink()
            summary.removed += 1
    write_json(manifest_path, {"settings": settings, "items": items})
    return summary
