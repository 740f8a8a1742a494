"""Real-world versions of the test sets (``Set5-RW``, ``Set14-RW``): each HR image (modcropped) through the
degradation chain once, its draw fixed by (seed, set, image name), written as ``<out>/<SET>-RW/LR/X<scale>/`` with a
test list in ``<out>/lists/`` that points at the original HR and says the LR is the set's own (evaluation then reads
it instead of making bicubic LR). One fixed draw per image: the same files on every clone and host."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from srgan_lib.data.degradations import DegradationSettings, degrade_batch, to_uint8
from srgan_lib.data.lists import INDEX, LIST_VERSION, OWN_LR, read_list
from srgan_lib.data.resize import modcrop
from srgan_lib.io.images import read_image, write_json, write_png

log = logging.getLogger(__name__)


@dataclass
class RealWorldSummary:
    """What a run wrote: set name -> number of images."""

    sets: dict[str, int] = field(default_factory=dict)
    out: str = ""


def realworld_name(name: str, suffix: str) -> str:
    """``Set5`` -> ``Set5-RW``."""
    return f"{name}{suffix}"


def degrade_image(hr_u8: torch.Tensor, settings: DegradationSettings, seed: int, key: str) -> torch.Tensor:
    """One HR image (3 x H x W uint8, H and W multiples of the scale) through the chain, its draw keyed by ``key``
    alone: the LR, uint8."""
    lr, _ = degrade_batch(hr_u8[None].float() / 255, settings, seed, key)
    return to_uint8(lr[0])


def write_realworld_sets(lists_dir: str | Path, names: list[str], out: str | Path, settings: DegradationSettings,
                         *, seed: int, suffix: str = "-RW") -> RealWorldSummary:
    """The real-world version of each test set ``names`` (lists of ``lists_dir``) under ``out``, with its list."""
    out, scale = Path(out), settings.scale
    summary = RealWorldSummary(out=str(out))
    written = []
    for name in names:
        source = read_list(Path(lists_dir) / f"{name}.json")
        rw = realworld_name(name, suffix)
        root = out / rw
        entries = []
        for entry in tqdm(source["images"], desc=rw, unit="img", leave=False, disable=None):
            hr = modcrop(read_image(entry["path"]), scale)
            lr = degrade_image(torch.from_numpy(hr.copy()).permute(2, 0, 1), settings, seed, f"{name}/{entry['name']}")
            write_png(root / "LR" / f"X{scale}" / f"{entry['name']}.png", lr.permute(1, 2, 0).numpy())
            entries.append(entry)
        write_json(out / "lists" / f"{rw}.json", {
            "version": LIST_VERSION, "split": rw, "kind": "test", "roots": [root.as_posix()],
            "min_size": source["min_size"], "images": entries, OWN_LR: f"LR/X{scale}",
            "degradation": {"of": name, "seed": seed}})
        summary.sets[rw] = len(entries)
        written.append(rw)
    write_json(out / "lists" / INDEX, {"version": LIST_VERSION, "splits": written, "test": written})
    return summary
