"""The prepared training store: every training pair decoded once into two memory-mapped uint8 files.

Decoding a 2K PNG takes tens of milliseconds; a random crop from an already decoded array takes microseconds. The
``store`` stage (``srgan data store``) therefore decodes each HR image (modcropped) and its LR once into ``hr.u8`` and
``lr.u8``, row-major HxWx3 back to back, with ``index.json`` giving each image's offset and shape. Training opens
both files with ``np.memmap``: the operating system's page cache holds the pixels once for every worker process and
DDP rank, and a crop reads only the rows it needs. ``index.json`` is written last inside a temporary folder that is
renamed into place, so a killed build never leaves a store that looks complete.

The index records a fingerprint of its inputs (the training list and the degrade stage's manifest); training refuses
a store whose fingerprint no longer matches, with the command that rebuilds it. DVC's deps do the same one level up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srgan_lib.data.degrade import MANIFEST, sources_from_list
from srgan_lib.data.resize import modcrop
from srgan_lib.io.images import read_image
from srgan_lib.training import TrainingError

log = logging.getLogger(__name__)
VERSION = 1
INDEX = "index.json"


class StoreError(TrainingError):
    """The training store is missing, incomplete or stale; the message gives the command that (re)builds it."""


@dataclass(frozen=True)
class StoreSummary:
    """What a store build wrote."""

    out: Path
    images: int
    hr_bytes: int
    lr_bytes: int
    seconds: float


def fingerprint(train_list: str | Path, lr_dir: str | Path, scale: int) -> str:
    """Identity of a store's inputs: the list's bytes, the LR folder's degrade manifest (settings and per-source
    stamps) and the scale (a store for another scale is therefore stale). Content, not paths or mtimes, so a DVC
    checkout or a copied workspace still matches."""
    h = hashlib.sha256(f"v{VERSION} x{scale}\n".encode())
    h.update(Path(train_list).read_bytes())
    manifest = Path(lr_dir) / MANIFEST
    h.update(manifest.read_bytes() if manifest.is_file() else b"no manifest")
    return h.hexdigest()


def build_command(train_list: str | Path, lr_dir: str | Path, out: str | Path, scale: int) -> str:
    return f"srgan data store --list {train_list} --lr-dir {lr_dir} --out {out} --scale {scale}"


def build_store(train_list: str | Path, lr_dir: str | Path, out: str | Path, *, scale: int = 4,
                progress: bool | None = None) -> StoreSummary:
    """Decode every (HR, LR) pair of ``train_list`` (LR under ``lr_dir`` from the degrade stage) into a store."""
    start = time.perf_counter()
    out, lr_dir = Path(out), Path(lr_dir)
    pairs = [(src, lr_dir / rel) for src, rel in sources_from_list(train_list)]
    manifest = lr_dir / MANIFEST
    stamps = json.loads(manifest.read_text(encoding="utf-8")).get("items", {}) if manifest.is_file() else {}
    if not pairs:
        raise StoreError(f"training list '{train_list}' holds no images")
    missing = [lr for _, lr in pairs if not lr.is_file()]
    if missing:
        raise StoreError(
            f"{len(missing)} LR image(s) missing under '{lr_dir}' (first: '{missing[0]}'); run the degrade stage "
            f"(`dvc repro degrade` or `srgan data degrade --list {train_list} --out {lr_dir}`)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        images, offsets = [], {"hr": 0, "lr": 0}
        with open(tmp / "hr.u8", "wb") as fh_hr, open(tmp / "lr.u8", "wb") as fh_lr:
            for hr_path, lr_path in tqdm(pairs, desc="store", unit="img", leave=False,
                                         disable=None if progress is None else not progress):
                hr = modcrop(read_image(hr_path), scale)
                lr = read_image(lr_path)
                if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                    raise StoreError(
                        f"LR '{lr_path}' is {lr.shape[1]}x{lr.shape[0]}, HR '{hr_path}' modcropped is "
                        f"{hr.shape[1]}x{hr.shape[0]}: not x{scale}; re-run the degrade stage with scale {scale}"
                    )
                rel = lr_path.relative_to(lr_dir).as_posix()
                entry = {"hr_path": str(hr_path), "lr_path": str(lr_path), "paired": "paired" in stamps.get(rel, {})}
                for key, arr, fh in (("hr", hr, fh_hr), ("lr", lr, fh_lr)):
                    fh.write(np.ascontiguousarray(arr).tobytes())
                    entry[f"{key}_offset"], entry[f"{key}_shape"] = offsets[key], list(arr.shape)
                    offsets[key] += arr.nbytes
                images.append(entry)
            for fh in (fh_hr, fh_lr):
                fh.flush()
                os.fsync(fh.fileno())
        index = {"version": VERSION, "scale": scale, "fingerprint": fingerprint(train_list, lr_dir, scale),
                 "train_list": str(train_list), "lr_dir": str(lr_dir), "hr_bytes": offsets["hr"],
                 "lr_bytes": offsets["lr"], "images": images}
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StoreSummary(out, len(images), offsets["hr"], offsets["lr"], time.perf_counter() - start)


class TrainingStore:
    """A built store opened read-only: ``store.hr(i)`` / ``store.lr(i)`` are HxWx3 uint8 views into the memory maps.

    The maps are opened lazily in each process (pickling sends only the folder), so DataLoader workers started with
    ``spawn`` share the page cache instead of copying the pixels.
    """

    def __init__(self, path: str | Path, *, expect: str | None = None, rebuild: str = "") -> None:
        self.path = Path(path)
        how = f"; build it with `{rebuild}`" if rebuild else ""
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise StoreError(f"training store '{self.path}' not found or incomplete (no {INDEX}){how}")
        try:
            self.index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"'{index_path}' is unreadable ({exc}){how}") from None
        if self.index.get("version") != VERSION:
            raise StoreError(f"training store '{self.path}' has format {self.index.get('version')}, this code reads "
                             f"{VERSION}{how}")
        if expect is not None and self.index["fingerprint"] != expect:
            raise StoreError(f"training store '{self.path}' is stale: its training list or LR images changed since it "
                             f"was built (`dvc repro` rebuilds it){how}")
        for key in ("hr", "lr"):
            f = self.path / f"{key}.u8"
            if not f.is_file() or f.stat().st_size != self.index[f"{key}_bytes"]:
                raise StoreError(f"'{f}' is missing or truncated{how}")
        self.scale: int = self.index["scale"]
        self.images: list[dict] = self.index["images"]
        self._maps: dict[str, np.memmap] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def _map(self, key: str) -> np.memmap:
        if self._maps is None:
            self._maps = {k: np.memmap(self.path / f"{k}.u8", dtype=np.uint8, mode="r") for k in ("hr", "lr")}
        return self._maps[key]

    def _view(self, key: str, i: int) -> np.ndarray:
        entry = self.images[i]
        h, w, c = entry[f"{key}_shape"]
        off = entry[f"{key}_offset"]
        return self._map(key)[off:off + h * w * c].reshape(h, w, c)

    def hr(self, i: int) -> np.ndarray:
        return self._view("hr", i)

    def lr(self, i: int) -> np.ndarray:
        return self._view("lr", i)

    def paired(self, i: int) -> bool:
        """Whether image ``i``'s LR is its folder's own (a camera pair), not the degrade stage's bicubic."""
        return bool(self.images[i].get("paired", False))

    def min_hr_side(self) -> tuple[int, str]:
        """The shortest HR side in the store and the file it belongs to."""
        side, name = min((min(e["hr_shape"][:2]), e["hr_path"]) for e in self.images)
        return side, name


def open_training_store(store: str | Path, train_list: str | Path, lr_dir: str | Path, scale: int) -> TrainingStore:
    """The store for these inputs, verified against their fingerprint (missing or stale: an error with the fix)."""
    cmd = build_command(train_list, lr_dir, store, scale)
    for path, what in ((Path(train_list), "training list"), (Path(lr_dir), "LR folder")):
        if not path.exists():
            raise StoreError(f"{what} '{path}' not found; run `dvc repro` (or the lists/degrade stages) first")
    return TrainingStore(store, expect=fingerprint(train_list, lr_dir, scale), rebuild=cmd)  # scale is in the print
