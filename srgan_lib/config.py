"""``params.yaml``: the one place that holds every stage's parameters, validated on load.

Each stage section unpacks into the flags of its CLI command (DVC's ``${section}`` dict unpacking), so ``dvc.yaml``,
the CLI and later the Prefect flows read the same values. Validation names the offending key and what is allowed,
before any stage runs: unknown keys (typos), missing keys, wrong types and impossible values are all errors.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srgan_lib import DEFAULT_PARAMS
from srgan_lib.data.lists import LEAKAGE_CHECKS
from srgan_lib.paramfile import ParamsError, apply_overrides, read_params
from srgan_lib.resize import KERNELS
from srgan_lib.training.optim import SCHEDULES

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


def number(minimum: float | None = None, maximum: float | None = None, *, exclusive_min: bool = False) -> Check:
    """A real number (int or float, not a bool) within the given bounds; returned as float."""

    def check(value: Any, key: str) -> float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4 without a dot as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, "a number", value)
        low_ok = minimum is None or (value > minimum if exclusive_min else value >= minimum)
        if not low_ok or (maximum is not None and value > maximum):
            lo = "" if minimum is None else f"{'>' if exclusive_min else '>='} {minimum}"
            hi = "" if maximum is None else f"<= {maximum}"
            _fail(key, f"a number {' and '.join(b for b in (lo, hi) if b)}", value)
        return float(value)

    return check


def sha256_hex() -> Check:
    """A sha256 checksum (64 hex digits), or '' for none."""

    def check(value: Any, key: str) -> str:
        if value is None or value == "":
            return ""
        if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
            _fail(key, "a sha256 checksum (64 hex digits) or ''", value)
        return value.lower()

    return check


def boolean() -> Check:
    """true or false."""

    def check(value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            _fail(key, "true or false", value)
        return value

    return check


def options() -> Check:
    """A mapping of option names to scalars (a network's constructor arguments, e.g. ``{num_block: 23}``)."""

    def check(value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float | str | bool) for k, v in value.items()
        ):
            _fail(key, "a mapping of option names to numbers/strings (e.g. {num_block: 23})", value)
        return dict(value)

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
        "leakage": choice(LEAKAGE_CHECKS),
        "out": string(),
    },
    "degrade": {"kernel": choice(KERNELS)},
    "evaluate": {
        "lr_source": choice(("generate", "folder")),
        "kernel": choice(KERNELS),
        "baselines": list_of(choice(("bicubic", "nearest"))),
        "models": list_of(choice(("srresnet", "srgan", "rrdbnet", "esrgan")), non_empty=False),
        "ma": {"model": string(), "sha256": sha256_hex(), "download": boolean()},
        "lpips": {"net": choice(("alex", "vgg", "none")), "weights": string(), "sha256": sha256_hex(),
                  "backbone": string()},
    },
    "report": {"out": string(), "crop": integer(minimum=16)},
}


# torch.compile modes for train.compile (reduce-overhead: CUDA graphs)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
TRAIN_STAGES: tuple[str, ...] = ("srresnet", "srgan", "rrdbnet", "esrgan")
GENERATORS = ("srresnet", "rrdbnet")
DISCRIMINATORS = ("none", "srgan_discriminator", "esrgan_discriminator")
VGG_LAYER_PATTERN = r"(conv|relu)[1-5]_[1-4]|pool[1-5]"


def _stage_schema() -> dict[str, Any]:
    """One training stage (the same keys for all four recipes: one engine, configured)."""
    return {
        "generator": choice(GENERATORS),
        "generator_options": options(),
        "discriminator": choice(DISCRIMINATORS),
        "discriminator_options": options(),
        "init_from": string(),
        "batch_size": integer(minimum=1),
        "hr_size": integer(minimum=8),
        "augment": boolean(),
        "iterations": integer(minimum=1),
        "lr": number(0, exclusive_min=True),
        "d_lr": number(0, exclusive_min=True),
        "betas": list_of(number(0, 1)),
        "schedule": choice(SCHEDULES),
        "warmup": integer(minimum=0),
        "milestones": list_of(integer(minimum=1), non_empty=False),
        "gamma": number(0, exclusive_min=True),
        "lr_min": number(0),
        "d_steps": integer(minimum=1),
        "ema_decay": number(0, 1),
        "pixel": {"type": choice(("none", "mse", "l1")), "weight": number(0)},
        "perceptual": {
            "type": choice(("none", "mse", "l1")),
            "layer": string(),
            "weight": number(0),
            "feature_scale": number(0, exclusive_min=True),
        },
        "gan": {"type": choice(("none", "vanilla", "ragan")), "weight": number(0)},
        "val_every": integer(minimum=0),
        "ckpt_every": integer(minimum=1),
        "log_every": integer(minimum=1),
    }


SCHEMA["interpolate"] = {
    "psnr": string(),
    "gan": string(),
    "alpha": list_of(number(0, 1)),
    "out": string(),
}
SCHEMA["train"] = {
    "device": string(),
    "seed": integer(minimum=0),
    "threads": integer(minimum=0),
    "dist_timeout": integer(minimum=1),
    "amp": choice(("none", "auto", "bf16", "fp16")),
    "channels_last": boolean(),
    "fused_adam": boolean(),
    "ema_foreach": boolean(),
    "compile": choice(COMPILE_MODES),
    "sync_every": integer(minimum=1),
    "workers": integer(minimum=0),
    "vgg_weights": string(),
    "train_list": string(),
    "lr_dir": string(),
    "store": string(),
    "val_list": string(),
    "val_images": integer(minimum=0),
    "val_crop": integer(minimum=0),
    "out": string(),
    "models": string(),
    "keep_checkpoints": integer(minimum=1),
    "precise_bn": integer(minimum=0),
}
SCHEMA["tracking"] = {"uri": string(), "experiment": string()}
SCHEMA["register"] = {
    "models": list_of(choice(("srresnet", "srgan", "rrdbnet", "esrgan")), non_empty=False),
    "prefix": string(),
    "set": string(),
    "baseline": choice(("bicubic", "nearest")),
    "psnr_floor": number(0),
    "min_gain": number(0),
    "out": string(),
}
for _stage in TRAIN_STAGES:
    SCHEMA[_stage] = _stage_schema()


def _check_stage(name: str, st: dict[str, Any], scale: int) -> None:
    def bad(key: str, msg: str) -> ParamsError:
        return ParamsError(f"'{name}.{key}': {msg}")

    if st["hr_size"] % scale:
        raise bad("hr_size", f"the HR crop must be divisible by the scale {scale}, got {st['hr_size']}")
    if len(st["betas"]) != 2 or not all(0 <= b < 1 for b in st["betas"]):
        raise bad("betas", f"Adam needs two betas in [0, 1), got {st['betas']}")
    if st["milestones"] != sorted(set(st["milestones"])):
        raise bad("milestones", f"must be strictly increasing iterations, got {st['milestones']}")
    if st["warmup"] >= st["iterations"]:
        raise bad("warmup", f"{st['warmup']} warm-up iterations leave none of the {st['iterations']} iterations")
    if st["schedule"] == "cosine" and st["lr_min"] >= st["lr"]:
        raise bad("lr_min", f"the cosine schedule decays from lr {st['lr']} to lr_min, which must be smaller, got "
                  f"{st['lr_min']}")
    if st["ema_decay"] >= 1:
        raise bad("ema_decay", f"must be in [0, 1) (0 turns EMA off), got {st['ema_decay']}")
    if all(st[k]["type"] == "none" for k in ("pixel", "perceptual", "gan")):
        raise bad("pixel", "every loss is 'none': set at least one of pixel/perceptual/gan.type")
    if st["gan"]["type"] != "none" and st["discriminator"] == "none":
        raise bad("discriminator", f"gan.type is {st['gan']['type']!r}, so a discriminator is needed")
    if st["perceptual"]["type"] != "none" and not re.fullmatch(VGG_LAYER_PATTERN, st["perceptual"]["layer"]):
        layer = st["perceptual"]["layer"]
        raise bad("perceptual.layer", f"must be a VGG19 layer such as relu5_4 or conv5_4, got {layer!r}")
    if st["discriminator"] == "esrgan_discriminator":
        size = st["discriminator_options"].get("input_size", 128)
        if size != st["hr_size"]:
            raise bad("discriminator_options", f"input_size {size} must equal hr_size {st['hr_size']} (the VGG-style "
                      "discriminator has a fixed input size)")
    if st["val_every"] and st["val_every"] > st["iterations"]:
        raise bad("val_every", f"{st['val_every']} is beyond iterations ({st['iterations']}); "
                  "use 0 to validate only at the end")


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


def _check_semantics(params: dict[str, Any], base: Path, folders: bool = True) -> None:
    produced = {Path(params["embedded"]["out"])}
    for i, folder in enumerate(params["lists"]["train"]):
        if folders and Path(folder) not in produced and not (base / folder).is_dir():
            raise ParamsError(f"'lists.train[{i}]': training folder '{folder}' does not exist")
    names = []
    for i, entry in enumerate(params["lists"]["test"]):
        name, folder = entry.split("=", 1)
        names.append(name)
        if folders and not (base / folder).is_dir():
            raise ParamsError(f"'lists.test[{i}]': test set folder '{folder}' does not exist")
    if len(set(names)) != len(names):
        raise ParamsError(f"'lists.test' names must be unique, got {', '.join(names)}")
    if "train" in names:
        raise ParamsError("'lists.test': 'train' is reserved for the training split; rename that test set")
    for stage in TRAIN_STAGES:
        _check_stage(stage, params[stage], params["scale"])
    reg = params["register"]  # (register.set is checked by the stage: a run may evaluate on fewer test sets)
    for i, model in enumerate(reg["models"]):
        if model not in params["evaluate"]["models"]:
            raise ParamsError(f"'register.models[{i}]': {model!r} is not evaluated (evaluate.models), so the gate has "
                              "no numbers for it")
    if reg["baseline"] not in params["evaluate"]["baselines"]:
        raise ParamsError(f"'register.baseline': {reg['baseline']!r} is not in evaluate.baselines")


def validate(params: Any, *, base: str | Path = ".", folders: bool = True) -> dict[str, Any]:
    """Check a parsed params mapping against :data:`SCHEMA` and (``folders``) that its data folders exist under
    ``base``; return the validated copy."""
    validated = _validate(params, SCHEMA, "")
    _check_semantics(validated, Path(base), folders)
    return validated


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: Sequence[str] = (), *,
                folders: bool = True) -> dict[str, Any]:
    """Read and validate ``params.yaml`` or an overlay of it (``extends:``), with optional ``section.key=value``
    overrides; errors name file and key."""
    path = Path(path)
    raw = read_params(path)
    try:
        if overrides:
            raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides)
        return validate(raw, base=Path.cwd(), folders=folders)  # paths are relative to where stages run
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
