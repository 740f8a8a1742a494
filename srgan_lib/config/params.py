"""``params.yaml``: the one place that holds every stage's parameters, loaded into typed settings (:class:`Params`).

Each stage section unpacks into the flags of its command (DVC's ``${section}`` dict unpacking), so ``dvc.yaml``, the
CLI and the Prefect flows read the same values. Loading names the offending key and what is allowed, before any
stage runs: unknown keys (typos), missing keys, wrong types and impossible values are all errors. The section models
are in :mod:`srgan_lib.config`; this module assembles them, checks what spans sections, and loads files.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from srgan_lib import DEFAULT_PARAMS
from srgan_lib.config.fields import ERROR, Int, Section, fail
from srgan_lib.config.paramfile import ParamsError, apply_overrides, read_params
from srgan_lib.config.sections import (
    DEFAULT_SCALE,
    SCALES,
    Degradation,
    Degrade,
    Embedded,
    Evaluate,
    Interpolate,
    Lists,
    Realworld,
    Recipes,
    Register,
    Report,
    Tracking,
)
from srgan_lib.config.training import Recipe, Train

__all__ = ["DEFAULT_PARAMS", "Params", "ParamsError", "Recipe", "Train", "load_params", "override",
           "validate"]


with warnings.catch_warnings():  # the field 'register' shadows ABCMeta.register on the class, not on instances
    warnings.simplefilter("ignore", UserWarning)

    class Params(Section):
        """Every stage's parameters (``params.yaml``), typed: ``params.esrgan.gan.weight``, ``params.train.amp``.
        The training recipes are the top-level sections that ``recipes`` names (each a :class:`Recipe`): adding one
        is a section and its name there, nothing else."""

        model_config = ConfigDict(extra="allow", frozen=True)
        __pydantic_extra__: dict[str, Recipe]  # the recipe sections

        scale: Int(choices=SCALES) = DEFAULT_SCALE
        embedded: Embedded
        lists: Lists
        degrade: Degrade
        degradation: Degradation
        realworld: Realworld
        evaluate: Evaluate
        report: Report
        register: Register
        train: Train
        tracking: Tracking
        recipes: Recipes
        interpolate: Interpolate

        @model_validator(mode="before")
        @classmethod
        def _sections_are_known(cls, data: Any) -> Any:
            """Every top-level key is a field or a recipe that ``recipes`` names (a typo is an unknown key, not a
            recipe), and every recipe named there has its section."""
            if not isinstance(data, dict):
                return data
            recipes = data.get("recipes") if isinstance(data.get("recipes"), dict) else {}
            scratch, finetuned = recipes.get("scratch") or [], recipes.get("finetuned") or {}
            named = [*(scratch if isinstance(scratch, list) else []), *(finetuned if isinstance(finetuned, dict)
                                                                        else [])]
            unknown = [k for k in data if k not in cls.model_fields and k not in named]
            if unknown:
                raise fail(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(cls.model_fields)} "
                           "and the recipes that 'recipes' names")
            missing = [n for n in named if isinstance(n, str) and n not in data]
            if missing:
                raise fail(f"'recipes' names {', '.join(map(repr, missing))} without a section of that name")
            return data

        @model_validator(mode="before")
        @classmethod
        def _crops_fit_the_scale(cls, data: Any) -> Any:
            """An HR crop the scale does not divide has no LR crop; said first, since it explains later errors."""
            scale = data.get("scale", DEFAULT_SCALE) if isinstance(data, dict) else None
            if scale not in SCALES or isinstance(scale, bool):  # a bad scale is named by its own check
                return data
            for stage in (k for k in data if k not in cls.model_fields):
                hr = data[stage].get("hr_size") if isinstance(data.get(stage), dict) else None
                if isinstance(hr, int) and not isinstance(hr, bool) and hr % scale:
                    raise fail(f"'{stage}.hr_size': the HR crop must be divisible by the scale {scale}, got {hr}")
            return data

        def stage(self, name: str) -> Recipe:
            """The training recipe ``name`` (one that ``recipes`` names)."""
            if name not in self.recipes.names():
                raise ParamsError(f"unknown recipe {name!r}; params.yaml's recipes: {', '.join(self.recipes.names())}")
            return (self.__pydantic_extra__ or {})[name]

        def as_dict(self) -> dict[str, Any]:
            """Plain values (YAML, MLflow params, hashes), in the file's order."""
            return self.model_dump(mode="python")


def _key(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The settings model at ``loc`` (``('lists',)`` -> Lists), for naming the allowed keys."""
    model: Any = Params
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else (Recipe if model is Params else None)  # a recipe
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def _message(error: Any) -> str:
    """One pydantic error as today's message: the dotted key, what is allowed, what was given."""
    loc, kind = tuple(error["loc"]), error["type"]
    key = _key(loc)
    if kind == ERROR:
        text = error["ctx"]["message"]
        if text.startswith("'"):  # a stage's consistency check names its own key: 'warmup': ...
            return f"'{key}.{text[1:]}" if key else text
        return f"'{key or '<top level>'}' {text}"
    if kind in ("srgan_missing", "missing"):
        names = error["ctx"]["keys"] if kind == "srgan_missing" else [loc[-1]]
        parent = loc if kind == "srgan_missing" else loc[:-1]
        return f"missing key(s) {', '.join(repr(_key((*parent, n))) for n in names)}"
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        where = f"'{_key(loc[:-1])}'" if loc[:-1] else "the top level"
        allowed = f"; allowed: {', '.join(parent.model_fields)}" if parent is not None else ""
        return f"unknown key(s) {key!r} in {where}{allowed}"
    return f"'{key}': {error['msg']}"


def _merge_unknown(messages: list[str]) -> list[str]:
    """Unknown keys of one section in one message ("unknown key(s) 'a.x', 'a.y' in 'a'; allowed: ...")."""
    merged: dict[str, list[str]] = {}
    out: list[str] = []
    for m in messages:
        if m.startswith("unknown key(s) "):
            name, rest = m[len("unknown key(s) "):].split(" in ", 1)
            if rest not in merged:
                merged[rest] = []
                out.append(rest)
            merged[rest].append(name)
        else:
            out.append(m)
    return [f"unknown key(s) {', '.join(merged[m])} in {m}" if m in merged else m for m in out]


def _check_semantics(params: Params, base: Path, folders: bool) -> None:
    """What spans sections or needs the file system (the data folders)."""
    produced = {Path(params.embedded.out)}
    for i, folder in enumerate(params.lists.train):
        if folders and Path(folder) not in produced and not (base / folder).is_dir():
            raise ParamsError(f"'lists.train[{i}]': training folder '{folder}' does not exist")
    names = []
    for i, entry in enumerate(params.lists.test):
        name, folder = entry.split("=", 1)
        names.append(name)
        if folders and not (base / folder).is_dir():
            raise ParamsError(f"'lists.test[{i}]': test set folder '{folder}' does not exist")
    if len(set(names)) != len(names):
        raise ParamsError(f"'lists.test' names must be unique, got {', '.join(names)}")
    for i, name in enumerate(params.realworld.sets):
        if name not in names:
            raise ParamsError(f"'realworld.sets[{i}]': {name!r} is not a test set of lists.test ({', '.join(names)})")
        if f"{name}{params.realworld.suffix}" in names:
            raise ParamsError(f"'realworld.suffix': {name}{params.realworld.suffix} is already a test set's name")
    if "train" in names:
        raise ParamsError("'lists.test': 'train' is reserved for the training split; rename that test set")
    recipes = params.recipes.names()
    if len(set(recipes)) != len(recipes):
        raise ParamsError(f"'recipes': a name appears twice in {', '.join(recipes)}")
    for name, parent in params.recipes.finetuned.items():
        if parent not in recipes:
            raise ParamsError(f"'recipes.finetuned.{name}': {parent!r} is not a recipe")
    for section in ("evaluate", "register"):
        for i, model in enumerate(getattr(params, section).models):
            if model not in recipes:
                raise ParamsError(f"'{section}.models[{i}]': {model!r} is not a recipe (recipes: "
                                  f"{', '.join(recipes)})")
    reg = params.register  # (register.set is checked by the stage: a run may evaluate on fewer test sets)
    for i, model in enumerate(reg.models):
        if model not in params.evaluate.models:
            raise ParamsError(f"'register.models[{i}]': {model!r} is not evaluated (evaluate.models), so the gate has "
                              "no numbers for it")
    if reg.baseline not in params.evaluate.baselines:
        raise ParamsError(f"'register.baseline': {reg.baseline!r} is not in evaluate.baselines")


def validate(raw: Any, *, base: str | Path = ".", folders: bool = True) -> Params:
    """Type a parsed params mapping (every key must be given, as in a parameter file) and (``folders``) check that
    its data folders exist under ``base``."""
    try:
        params = Params.model_validate(raw, context={"complete": True})
    except ValidationError as exc:
        raise ParamsError("; ".join(_merge_unknown([_message(e) for e in exc.errors(include_url=False)]))) from None
    _check_semantics(params, Path(base), folders)
    return params


def override(params: Params, overrides: Sequence[str]) -> Params:
    """``params`` with ``section.key=value`` overrides applied, typed again (a sweep's combination, a test's variant);
    the data folders are not looked at again."""
    try:
        return validate(apply_overrides(params.as_dict(), overrides), folders=False)
    except ParamsError as exc:
        raise ParamsError(f"overrides {' '.join(overrides)}: {exc}") from None


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: Sequence[str] = (), *,
                folders: bool = True) -> Params:
    """Read and type ``params.yaml`` or an overlay of it (``extends:``), with optional ``section.key=value``
    overrides; errors name file and key."""
    path = Path(path)
    raw = read_params(path)
    try:
        if overrides:
            raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides)
        return validate(raw, base=Path.cwd(), folders=folders)  # paths are relative to where stages run
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
