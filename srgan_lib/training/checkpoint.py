"""Training checkpoints: everything a run needs to continue exactly, written atomically, never overwritten in place.

A checkpoint is ``<run>/checkpoints/iter_XXXXXXXX.pt`` holding models, optimisers, EMA, AMP scaler, RNG states
(Python, NumPy, torch, CUDA; the data sampler is a function of (seed, iteration)), the iteration, the resolved
config and the history so far. It is written to a temporary file, fsynced and renamed: a killed process leaves either
the previous checkpoints or the new one, never a truncated file under a checkpoint's name. Loading uses
``weights_only=True``, so only tensors and plain containers are read.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srgan_lib.io.weights import load_weights, save_torch

log = logging.getLogger(__name__)
FORMAT = "srgan-train-1"
_NAME = re.compile(r"^iter_(\d{8})\.pt$")


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    """Where the checkpoint of ``iteration`` lives."""
    return Path(run_dir) / "checkpoints" / f"iter_{iteration:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def rng_state() -> dict[str, Any]:
    """Every global random state, in weights-only-loadable form."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(obj: Any) -> Any:
    """``random.setstate`` wants tuples; a round trip through the checkpoint may give lists."""
    return tuple(_tuples(o) for o in obj) if isinstance(obj, list | tuple) else obj


def save_checkpoint(run_dir: str | Path, iteration: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint of ``iteration`` atomically, then delete all but the newest ``keep`` checkpoints."""
    path = checkpoint_path(run_dir, iteration)
    save_torch({"format": FORMAT, "iteration": iteration, **state}, path)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one training checkpoint (weights only); a foreign or damaged file is a clear error naming it."""
    path = Path(path)
    ckpt = load_weights(path, "training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not a srgan training checkpoint (format {FORMAT})")
    return ckpt


def latest_checkpoint(run_dir: str | Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of a run (a damaged newest file is reported and skipped), or None."""
    for iteration, path in reversed(list_checkpoints(run_dir)):
        try:
            ckpt = load_checkpoint(path)
        except ValueError as exc:
            log.warning("skipping %s", exc)
            continue
        ckpt["path"] = str(path)
        log.info("found checkpoint %s (iteration %d)", path, iteration)
        return ckpt
    return None
