"""``params.yaml``: the one place that holds every stage's parameters, validated on load.

Each stage section unpacks into the flags of its CLI command (DVC's ``${section}`` dict unpacking), so ``dvc.yaml``,
the CLI and later the Prefect flows read the same values. Validation names the offending key and what is allowed,
before any stage runs: unknown keys (typos), missing keys, wrong types and impossible values are all errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from srgan_lib.resize import KERNELS

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """``params.yaml`` is invalid; the message names the file, the key and what is allowed."""


Check = Callable[[Any, str], Any]


def _fail(key: str, expected: str, value: Any) -> None:
    raise ParamsError(f"'{key}' must be {expected}, got {value!r}")


def integer(minimum: int | None = None, choices: Sequence[int] | None = None) -> Check:
    """An int (not a bool), optionally >= ``minimum`` or one of ``choices``."""

    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, "an integer", value)
        if minimum is not None and value < minimum:
            _fail(key, f"an integer >= {minimum}", value)
        if choices is not None and value not in choices:
            _fail(key, f"one of {', '.join(map(str, choices))}", value)
        return value

    return check


def string() -> Check:
    """A non-empty string."""

    def check(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            _fail(key, "a non-empty string", value)
        return value

    return check


def choice(options: Sequence[str]) -> Check:
    """One of ``options``."""

    def check(value: Any, key: str) -> str:
        if value not in options:
            _fail(key, f"one of {', '.join(options)}", value)
        return value

    return check


def list_of(item: Check, *, non_empty: bool = True) -> Check:
    """A YAML list whose every element passes ``item``."""

    def check(value: Any, key: str) -> list:
        if not isinstance(value, list) or (non_empty and not value):
            _fail(key, "a non-empty list" if non_empty else "a list", value)
        return [item(v, f"{key}[{i}]") for i, v in enumerate(value)]

    return check


def named_path() -> Check:
    """``NAME=PATH`` (a test set's name and folder)."""

    def check(value: Any, key: str) -> str:
        if not isinstance(value, str) or "=" not in value or not all(value.split("=", 1)):
            _fail(key, "NAME=PATH (for example Set5=data/benchmarks/Set5)", value)
        return value

    return check


SCHEMA: dict[str, Any] = {
    "scale": integer(choices=(2, 3, 4, 8)),
    "embedded": {"out": string()},
    "lists": {
        "train": list_of(string()),
        "test": list_of(named_path()),
        "min_size": integer(minimum=1),
        "test_min_size": integer(minimum=1),
        "out": string(),
    },
    "degrade": {"kernel": choice(KERNELS)},
    "evaluate": {
        "lr_source": choice(("generate", "folder")),
        "kernel": choice(KERNELS),
        "baselines": list_of(choice(("bicubic", "nearest"))),
    },
}


def _validate(node: Any, schema: Any, key: str) -> Any:
    if callable(schema):
        return schema(node, key)
    if not isinstance(node, dict):
        raise ParamsError(f"'{key or '<top level>'}' must be a mapping with keys {', '.join(schema)}, got {node!r}")
    unknown = sorted(set(node) - set(schema))
    if unknown:
        where = f"'{key}'" if key else "the top level"
        raise ParamsError(
            f"unknown key(s) {', '.join(repr(f'{key}.{u}' if key else u) for u in unknown)} in {where}; "
            f"allowed: {', '.join(schema)}"
        )
    missing = [k for k in schema if k not in node]
    if missing:
        raise ParamsError(f"missing key(s) {', '.join(repr(f'{key}.{m}' if key else m) for m in missing)}")
    return {k: _validate(node[k], sub, f"{key}.{k}" if key else k) for k, sub in schema.items()}


def _check_semantics(params: dict[str, Any], base: Path) -> None:
    produced = {Path(params["embedded"]["out"])}
    for i, folder in enumerate(params["lists"]["train"]):
        if Path(folder) not in produced and not (base / folder).is_dir():
            raise ParamsError(f"'lists.train[{i}]': training folder '{folder}' does not exist")
    names = []
    for i, entry in enumerate(params["lists"]["test"]):
        name, folder = entry.split("=", 1)
        names.append(name)
        if not (base / folder).is_dir():
            raise ParamsError(f"'lists.test[{i}]': test set folder '{folder}' does not exist")
    if len(set(names)) != len(names):
        raise ParamsError(f"'lists.test' names must be unique, got {', '.join(names)}")
    if "train" in names:
        raise ParamsError("'lists.test': 'train' is reserved for the training split; rename that test set")


def validate(params: Any, *, base: str | Path = ".") -> dict[str, Any]:
    """Check a parsed params mapping against :data:`SCHEMA` and the file system; return the validated copy."""
    validated = _validate(params, SCHEMA, "")
    _check_semantics(validated, Path(base))
    return validated


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read and validate ``params.yaml``; errors name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    try:
        return validate(raw, base=path.parent)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
