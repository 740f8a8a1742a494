"""The grid of a sweep: ``section.key=v1,v2`` axes, their product, every combination typed before anything runs."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from srgan_lib import UserError
from srgan_lib.config.paramfile import ParamsError, yaml_value
from srgan_lib.config.params import Params, override

MAX_COMBINATIONS = 64  # a larger grid is refused: split it, or raise --max deliberately


class GridError(UserError, ValueError):
    """The grid cannot be swept; the message names the key or value and what to do."""


@dataclass(frozen=True)
class Axis:
    """One swept key and its values, in the order given."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Combination:
    """One point of the grid: its values, their ``-S`` overrides and the name of its DVC experiment."""

    index: int
    values: dict[str, Any]
    name: str

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={_yaml(v)}" for k, v in self.values.items()]

    @property
    def label(self) -> str:
        return " ".join(self.overrides)


def _yaml(value: Any) -> str:
    """A value as the YAML ``-S`` and params.yaml read back to the same thing (``0.001``, ``[1, 2]``, ``pil``)."""
    return value if isinstance(value, str) else json.dumps(value)


def _split_top_level(text: str) -> list[str]:
    """``1e-3,[1,2],pil`` -> ``['1e-3', '[1,2]', 'pil']``: commas inside brackets or quotes do not split."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_axis(text: str) -> Axis:
    """``esrgan.gan.weight=5e-3,1e-2`` -> Axis('esrgan.gan.weight', (0.005, 0.01)); values are YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", key):
        raise GridError(f"grid axis {text!r} must look like section.key=V1,V2 "
                        "(for example esrgan.gan.weight=5e-3,1e-2)")
    values = []
    for part in _split_top_level(raw):
        if not part:
            raise GridError(f"grid axis {text!r}: '{key}' has an empty value (write V1,V2 with no empty item)")
        values.append(yaml_value(part))
    if len(set(map(json.dumps, values))) != len(values):
        raise GridError(f"grid axis {text!r}: '{key}' repeats a value")
    return Axis(key, tuple(values))


def parse_grid(texts: Sequence[str]) -> list[Axis]:
    """Every axis, each key once; an empty grid is an error."""
    if not texts:
        raise GridError("the grid is empty: give at least one axis, e.g. esrgan.gan.weight=5e-3,1e-2")
    axes = [parse_axis(t) for t in texts]
    keys = [a.key for a in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise GridError(f"grid key '{key}' is given twice: put all its values in one axis ({key}=V1,V2,...)")
    return axes


def sweep_id(axes: Sequence[Axis], targets: Sequence[str], params: Params) -> str:
    """What identifies a sweep (its grid, its stages and the parameters it starts from): a second call of the same
    sweep finds the experiments the first one finished and continues."""
    text = json.dumps({"grid": [[a.key, list(a.values)] for a in axes], "targets": list(targets),
                       "params": params.as_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def combinations(params: Params, axes: Sequence[Axis], ident: str, *,
                 maximum: int = MAX_COMBINATIONS) -> list[Combination]:
    """The grid's product, each combination validated as params.yaml would be (an error names the key and the
    combination); more than ``maximum`` combinations is refused before anything runs."""
    count = 1
    for a in axes:
        count *= len(a.values)
    if count > maximum:
        raise GridError(f"the grid has {count} combinations, more than the maximum {maximum} "
                        f"({' x '.join(str(len(a.values)) for a in axes)}): sweep fewer values, or pass --max {count}")
    out = []
    for i, values in enumerate(itertools.product(*(a.values for a in axes))):
        combo = Combination(i, dict(zip((a.key for a in axes), values, strict=True)), f"sweep-{ident}-{i:02d}")
        try:
            override(params, combo.overrides)
        except ParamsError as exc:
            raise GridError(f"combination {combo.label}: {exc}") from None
        out.append(combo)
    return out
