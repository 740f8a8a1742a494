"""Reading weight files safely: every ``torch.load`` of the project goes through :func:`load_weights`, which never
runs code from the file (``weights_only=True``) and says in our words what was refused and what to do."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from srgan_lib import UserError


class UnsafeCheckpoint(UserError, ValueError):
    """The file holds Python objects beyond tensors and plain containers: loading it would execute its code."""


class DamagedCheckpoint(UserError, ValueError):
    """The file is not a PyTorch checkpoint, or it is truncated or corrupt."""


def load_weights(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing file, a file that would run code, and a damaged
    file each get a one-line error naming the file (``what`` says what it was meant to be)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' not found")
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
