"""Reading weight files safely, writing them reproducibly (:func:`save_torch`). Every weight file the project reads
goes through :func:`load_weights`, which never runs code from the file (``torch.load(weights_only=True)``, or
safetensors, which holds tensors only) and says in our words what was refused and what to do.

A ``.safetensors`` generator file (recognised by its content, whatever its name) holds one flat state dict (what
spandrel, chaiNNer and Real-ESRGAN's tools read) and, when this project wrote it, the checkpoint's ``meta`` record
as JSON in the file's metadata (:func:`save_generator_safetensors`)."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from srgan_lib import UserError
from srgan_lib.io.images import atomic_path


class UnsafeCheckpoint(UserError, ValueError):
    """The file holds Python objects beyond tensors and plain containers: loading it would execute its code."""


class DamagedCheckpoint(UserError, ValueError):
    """The file is not a PyTorch checkpoint, or it is truncated or corrupt."""


SAFETENSORS_META = "srgan.meta"  # metadata key of the checkpoint's meta record (JSON)
SAFETENSORS_WEIGHTS = "srgan.weights"  # which weights of the checkpoint the file holds: params_ema | params


def is_safetensors(path: str | Path) -> bool:
    """Whether the file starts like a safetensors file: an 8-byte little-endian header length, then JSON."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= struct.unpack("<Q", head[:8])[0] <= 100_000_000


def _load_safetensors(path: Path, what: str) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DamagedCheckpoint(
            f"{what} '{path}' is not a readable safetensors file ({type(exc).__name__}: {str(exc)[:200]}); it may "
            "be truncated (an interrupted copy or download)"
        ) from None
    if SAFETENSORS_META not in metadata:
        return tensors  # a plain state dict (written elsewhere)
    try:
        meta = json.loads(metadata[SAFETENSORS_META])
    except json.JSONDecodeError:
        raise DamagedCheckpoint(f"{what} '{path}': its '{SAFETENSORS_META}' metadata is not JSON") from None
    return {metadata.get(SAFETENSORS_WEIGHTS, "params"): tensors, "meta": meta}


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` of plain containers and tensors to ``path``, atomically and byte-reproducibly: written through a
    file object, so the zip archive's record folder is torch's fixed ``archive`` rather than the temporary file's
    random name (which made two identical checkpoints differ byte-wise between clones)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def save_generator_safetensors(checkpoint: dict[str, Any], path: str | Path, *, prefer_ema: bool = True) -> str:
    """Write a generator checkpoint (``{'params', 'params_ema', 'meta'}`` or a bare state dict) as safetensors: the
    EMA weights when present (what inference uses) unless ``prefer_ema`` is false; returns which were written."""
    from safetensors.torch import save_file

    order = ("params_ema", "params") if prefer_ema else ("params", "params_ema")
    key = next((k for k in order if isinstance(checkpoint.get(k), dict)), None)
    state = checkpoint[key] if key else checkpoint
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a generator checkpoint: expected tensors, 'params' or 'params_ema'")
    metadata = {"format": "pt", SAFETENSORS_WEIGHTS: key or "params"}
    if isinstance(checkpoint.get("meta"), dict):
        metadata[SAFETENSORS_META] = json.dumps(checkpoint["meta"], sort_keys=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    return key or "params"


def load_weights(path: str | Path, what: str = "checkpoint") -> Any:
    """The contents of a weight file on the CPU: ``torch.load(path, weights_only=True)``, or a safetensors file
    (by content); a missing file, a file that would run code, and a damaged file each get a one-line error naming
    the file (``what`` says what it was meant to be)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' not found")
    if is_safetensors(path):
        return _load_safetensors(path, what)
    if path.suffix == ".safetensors":
        raise DamagedCheckpoint(f"{what} '{path}' is named .safetensors but does not start with a safetensors "
                                "header; it may be truncated or not a safetensors file at all")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        objects = f" (it contains {', '.join(dict.fromkeys(found))})" if found else ""
        raise UnsafeCheckpoint(
            f"{what} '{path}' holds Python objects, not only tensors{objects}: loading it would run code from the "
            "file, so it is refused. If you trust its source, re-save just its weights in that environment, e.g. "
            "torch.save({'params': model.state_dict()}, 'weights.pth'), and use that file"
        ) from None
    except Exception as exc:  # zip/pickle damage: RuntimeError, EOFError, ValueError, ... depending on where
        raise DamagedCheckpoint(
            f"{what} '{path}' is not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
            "it may be truncated (an interrupted copy or download) or not a .pth file at all"
        ) from None
