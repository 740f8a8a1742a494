"""Data lists stage: scan image folders, validate every file, write one JSON list per split and a rejects report.

An image is kept when it decodes completely, converts to RGB and is at least ``min_size`` pixels on its short side.
Rejected: undecodable or truncated files, images that are too small, and duplicates (identical decoded RGB pixels)
within a split. **Test-set leakage**: a training image identical to a test image of any configured test set is
rejected, and with ``leakage="near"`` (the default) so is one that shows a test image in another form: resized,
re-encoded, flipped, rotated, turned grey or cropped (:mod:`srgan_lib.data.leakage`). Order is deterministic:
folders in the order given, files in sorted path order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from srgan_lib.config.sections import LEAKAGE_CHECKS
from srgan_lib.io.images import ImageReadError, iter_image_files, open_image, to_rgb, write_json

if TYPE_CHECKING:  # the index needs torch: imported only where a near-duplicate check runs (CLI start-up stays fast)
    from srgan_lib.data.leakage import LeakageIndex

log = logging.getLogger(__name__)
LIST_VERSION = 1
INDEX = "index.json"
OWN_LR = "lr"  # a test list's optional key: the set's own LR folder under its root (real-world LR, not bicubic)


@dataclass(frozen=True)
class ImageEntry:
    """One accepted image: where it is, its size, its original mode and the md5 of its decoded RGB pixels."""

    path: str
    name: str
    width: int
    height: int
    mode: str
    md5: str


@dataclass(frozen=True)
class Rejection:
    """One rejected file and why."""

    path: str
    reason: str
    detail: str


@dataclass
class SplitResult:
    """Accepted entries and rejections of one split."""

    split: str
    roots: list[str]
    min_size: int
    images: list[ImageEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def pixel_md5(rgb: np.ndarray) -> str:
    """md5 of the decoded RGB uint8 pixels (the convention of the shared benchmark README)."""
    return hashlib.md5(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def hr_folder(root: str | Path) -> Path:
    """The HR image folder of a data set: ``root/HR`` when it exists (benchmark layout), else ``root`` itself."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder '{root}' does not exist; check the path in params.yaml or the command")
    return root / "HR" if (root / "HR").is_dir() else root


def scan_split(
    split: str, roots: list[str | Path], min_size: int, forbidden: dict[str, str] | None = None, *,
    leakage: LeakageIndex | None = None, register: LeakageIndex | None = None,
) -> SplitResult:
    """Validate every image under ``roots``; ``forbidden`` maps pixel md5 -> path of images this split must not hold,
    ``leakage`` holds test images this split must not show in any form; each accepted image is added to
    ``register`` (how the test splits fill the leakage index)."""
    result = SplitResult(split=split, roots=[str(r) for r in roots], min_size=min_size)
    seen: dict[str, str] = {}
    forbidden = forbidden or {}
    files = [p for root in roots for p in iter_image_files(hr_folder(root))]
    for path in tqdm(files, desc=f"lists[{split}]", unit="img", leave=False, disable=None):
        shown = path.as_posix()
        try:
            img = open_image(path)
            mode = img.mode
            rgb = np.asarray(to_rgb(img, source=shown))
        except ImageReadError as exc:
            result.rejected.append(Rejection(shown, "undecodable", exc.reason))
            continue
        h, w = rgb.shape[:2]
        if min(h, w) < min_size:
            result.rejected.append(Rejection(shown, "too_small", f"{w}x{h}, short side < min_size {min_size}"))
            continue
        digest = pixel_md5(rgb)
        if digest in seen:
            result.rejected.append(Rejection(shown, "duplicate", f"same pixels as {seen[digest]}"))
            continue
        if digest in forbidden:
            result.rejected.append(Rejection(shown, "test_leakage", f"same pixels as test image {forbidden[digest]}"))
            continue
        leak = leakage.match(rgb) if leakage is not None else None
        if leak is not None:
            result.rejected.append(Rejection(shown, "test_leakage",
                                             f"{leak.how} of test image {leak.test} (match {leak.score:.2f})"))
            continue
        seen[digest] = shown
        result.images.append(ImageEntry(shown, path.stem, w, h, mode, digest))
        if register is not None:
            register.add(f"{split}/{path.stem}", rgb)
    return result


def build_lists(
    train: list[str | Path],
    test: dict[str, str | Path],
    out_dir: str | Path,
    *,
    min_size: int,
    test_min_size: int = 16,
    leakage: str = "near",
) -> dict[str, SplitResult]:
    """Write ``out_dir/train.json``, ``out_dir/<TEST>.json`` per test set, ``out_dir/rejects.json`` and
    ``out_dir/index.json`` (the splits in the order given, which every consumer keeps). ``leakage``: ``near``
    rejects training images that show a test image in any form, ``exact`` only identical ones."""
    if leakage not in LEAKAGE_CHECKS:
        raise ValueError(f"leakage check must be one of {', '.join(LEAKAGE_CHECKS)}, got {leakage!r}")
    out = Path(out_dir)
    results: dict[str, SplitResult] = {}
    from srgan_lib.data.leakage import LeakageIndex

    index = LeakageIndex() if leakage == "near" else None
    for name, root in test.items():
        results[name] = scan_split(name, [root], test_min_size, register=index)
    test_md5 = {e.md5: e.path for r in results.values() for e in r.images}
    if train:
        results = {"train": scan_split("train", list(train), min_size, forbidden=test_md5, leakage=index),
                   **results}
    for name, res in results.items():
        if not res.images:
            raise ValueError(
                f"split '{name}' has no usable image under {', '.join(res.roots)} "
                f"({len(res.rejected)} rejected, see the messages above); check the folder and min_size"
            )
        write_json(
            out / f"{name}.json",
            {
                "version": LIST_VERSION,
                "split": name,
                "kind": "train" if name == "train" else "test",
                "roots": res.roots,
                "min_size": res.min_size,
                "images": [asdict(e) for e in res.images],
            },
        )
    write_json(
        out / INDEX,
        {"version": LIST_VERSION, "splits": list(results), "test": [n for n in results if n != "train"]},
    )
    write_json(
        out / "rejects.json",
        {name: [asdict(r) for r in res.rejected] for name, res in results.items()},
    )
    for res in results.values():
        for rej in res.rejected:
            log.warning("rejected %s (%s): %s", rej.path, rej.reason, rej.detail)
    return results


def read_list(path: str | Path) -> dict:
    """Load a list written by :func:`build_lists`, checking its version."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"data list '{path}' not found; run `srgan data lists` or `dvc repro lists`") from None
    if data.get("version") != LIST_VERSION or "images" not in data:
        raise ValueError(f"'{path}' is not a data list of version {LIST_VERSION}; re-run `srgan data lists`")
    return data


def own_lr_file(data: dict, name: str, list_path: str | Path) -> Path | None:
    """Where a test list that carries its own LR (:data:`OWN_LR`: a real-world set) keeps image ``name``'s LR; None
    for a list without. A missing file is an error naming the stage that writes it."""
    if OWN_LR not in data:
        return None
    lr = Path(data["roots"][0]) / data[OWN_LR] / f"{name}.png"
    if not lr.is_file():
        raise FileNotFoundError(f"'{list_path}' says its LR is in '{lr.parent}', but '{lr}' is missing; re-run the "
                                "stage that wrote it (`dvc repro realworld`)")
    return lr


def test_lists(lists_dir: str | Path) -> list[Path]:
    """The test-split list files of a lists folder, in the order they were configured."""
    index = Path(lists_dir) / INDEX
    try:
        names = json.loads(index.read_text(encoding="utf-8"))["test"]
    except FileNotFoundError:
        raise FileNotFoundError(f"'{index}' not found; run `srgan data lists --out {lists_dir}` first") from None
    return [Path(lists_dir) / f"{name}.json" for name in names]
