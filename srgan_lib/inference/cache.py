"""The user's cache of measurements of `srgan upscale` (``tiles.json``): tuned tiles and context profiles, one JSON
file with a version and one section each, written atomically (a read-only home is a warning, never an error)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from srgan_lib.io.images import atomic_path

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 3: per-side pads and forward costs (whole-image estimates); older entries are ignored


def cache_path() -> Path:
    """Where tuned tiles are kept: ``$SRGAN_CACHE_DIR/tiles.json``, else ``$XDG_CACHE_HOME/srgan/``, else
    ``~/.cache/srgan/``."""
    if os.environ.get("SRGAN_CACHE_DIR"):
        return Path(os.environ["SRGAN_CACHE_DIR"]) / "tiles.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srgan" / "tiles.json"


def read_cache(path: Path, section: str = "tiles") -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get(section, {}) if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}


def write_entry(path: Path, key: str, entry: dict | None, section: str = "tiles") -> None:
    """Set (or with None remove) one entry of a section of the cache file, atomically; a read-only cache is a
    warning."""
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}
        except (OSError, ValueError):
            data = {}
        sect = data.setdefault(section, {})
        if entry is None:
            sect.pop(key, None)
        else:
            sect[key] = entry
        data["version"] = CACHE_VERSION
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as exc:  # a read-only home: tune again next time, say why once
        log.warning("could not write the tuned tile to %s (%s); set SRGAN_CACHE_DIR", path, exc)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters and buffers (the pad follows the weights, not only the layout)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
