"""Reading a parameter file: YAML with duplicate keys refused, overlays (``extends:``, e.g. ``configs/paper.yaml`` over
``params.yaml``) and ``section.key=value`` overrides. Validation is :mod:`srgan_lib.config.params`'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from srgan_lib import UserError


class ParamsError(UserError, ValueError):
    """``params.yaml`` is invalid; the message names the file, the key and what is allowed."""


class _ValueLoader(yaml.SafeLoader):
    """YAML values as YAML 1.2 (and DVC's ``-S``) read them: ``5e-3`` is a float, not PyYAML 1.1's string."""


_ValueLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def yaml_value(text: str) -> Any:
    """One value given on a command line (``5e-3``, ``[1, 2]``, ``pil``); unparsable YAML stays the string."""
    try:
        return yaml.load(text, Loader=_ValueLoader) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a dotted key (``esrgan.lr=5e-5``) and a YAML value (numbers, lists, strings)."""
    if "=" not in text or not text.split("=", 1)[0]:
        raise ParamsError(f"override {text!r} must look like section.key=value (for example esrgan.lr=5e-5)")
    key, raw = text.split("=", 1)
    return key, yaml_value(raw)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``section.key=value`` set; an unknown section or key is an error naming it."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        node, parts = out, key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ParamsError(f"override {text!r}: '{'.'.join(parts[: i + 1])}' is not a section of params.yaml")
            node = node[part]
        if parts[-1] not in node:
            raise ParamsError(f"override {text!r}: unknown key '{key}'; allowed here: {', '.join(node)}")
        node[parts[-1]] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently:
    ``scale: 4`` then ``scale: 2`` would train x2)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key == "<<":  # a merge key may repeat
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in one section (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}): keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A YAML parameter file, duplicate keys refused (:class:`_UniqueKeyLoader`)."""
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)


EXTENDS = "extends"  # top-level key of an overlay: the parameter file it changes (relative to the overlay)


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` laid over ``base``: mappings merge key by key, anything else (a list, a value) replaces."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_params(path: str | Path) -> Any:
    """A parameter file as one mapping, its ``extends:`` chain resolved (``configs/paper.yaml`` is the papers'
    settings laid over ``params.yaml``); errors name the file (missing, not YAML, a cycle)."""
    chain: list[Path] = []

    def read(file: Path, named_by: str) -> Any:
        if file.resolve() in chain:
            raise ParamsError(f"{chain[0]}: '{EXTENDS}' loops back to {file} ({' -> '.join(map(str, chain))})")
        chain.append(file.resolve())
        try:
            raw = read_yaml(file)
        except FileNotFoundError:
            raise ParamsError(f"{file}: file not found ({named_by})") from None
        except yaml.YAMLError as exc:
            raise ParamsError(f"{file}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict) or EXTENDS not in raw:
            return raw
        parent = raw.pop(EXTENDS)
        if not isinstance(parent, str) or not parent.strip():
            raise ParamsError(f"{file}: '{EXTENDS}' must be the path of the parameter file it changes, got {parent!r}")
        base = read(file.parent / parent, f"'{EXTENDS}' of {file}")
        if not isinstance(base, dict):
            raise ParamsError(f"{file.parent / parent}: not a mapping of sections ('{EXTENDS}' of {file})")
        return merge(base, raw)

    return read(Path(path), "run from the repository root or pass --params")
