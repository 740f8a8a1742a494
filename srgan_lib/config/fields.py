"""The field types of the settings models and their error messages ("'lists.min_size' must be an integer >= 1, got
0"): each type is a plain Python type plus a before-validator that names what is allowed, so an error says the fix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")
ERROR = "srgan_params"  # the pydantic error type of every message written here


def fail(message: str) -> PydanticCustomError:
    """A validation error whose text is ``message`` as is (the loader prefixes the key)."""
    return PydanticCustomError(ERROR, "{message}", {"message": message})


def _must(expected: str, value: Any) -> PydanticCustomError:
    return fail(f"must be {expected}, got {value!r}")


class Section(BaseModel):
    """A ``params.yaml`` section: frozen, unknown keys refused; a parameter *file* must give every key (validated with
    ``context={"complete": True}``), while the library and the CLI take the defaults declared on the fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _every_key_given(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise fail(f"must be a mapping with keys {', '.join(cls.model_fields)}, got {data!r}")
        if info.context and info.context.get("complete"):
            missing = [k for k in cls.model_fields if k not in data]
            if missing:
                raise PydanticCustomError("srgan_missing", "{keys}", {"keys": missing})
        return data


def default(model: type[BaseModel], name: str) -> Any:
    """The declared default of ``model``'s field ``name`` (what the CLI's flag defaults to); a field without one is
    a programming error here (its flag must then be required), raised when the command's parser is built."""
    field = model.model_fields[name]
    if field.is_required():
        raise TypeError(f"{model.__name__}.{name} has no default: make its flag required or declare one")
    return field.get_default(call_default_factory=True)


def _integer(minimum: int | None, choices: Sequence[int] | None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _must("an integer", value)
        if minimum is not None and value < minimum:
            raise _must(f"an integer >= {minimum}", value)
        if choices is not None and value not in choices:
            raise _must(f"one of {', '.join(map(str, choices))}", value)
        return value

    return check


def Int(minimum: int | None = None, choices: Sequence[int] | None = None) -> Any:
    """An int (not a bool), optionally >= ``minimum`` or one of ``choices``."""
    return Annotated[int, BeforeValidator(_integer(minimum, choices))]


def _number(minimum: float | None, maximum: float | None, exclusive_min: bool) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4 without a dot as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _must("a number", value)
        low_ok = minimum is None or (value > minimum if exclusive_min else value >= minimum)
        if not low_ok or (maximum is not None and value > maximum):
            lo = "" if minimum is None else f"{'>' if exclusive_min else '>='} {minimum}"
            hi = "" if maximum is None else f"<= {maximum}"
            raise _must(f"a number {' and '.join(b for b in (lo, hi) if b)}", value)
        return float(value)

    return check


def Number(minimum: float | None = None, maximum: float | None = None, *,
           exclusive_min: bool = False) -> Any:
    """A real number (int or float, not a bool) within the bounds; held as float."""
    return Annotated[float, BeforeValidator(_number(minimum, maximum, exclusive_min))]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _must("a non-empty string", value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
"""A non-empty string."""


def Choice(options: Sequence[str]) -> Any:
    """One of ``options`` (taken from the registry that implements them)."""
    allowed = tuple(options)

    def check(value: Any) -> str:
        if value not in allowed:
            raise _must(f"one of {', '.join(allowed)}", value)
        return value

    return Annotated[str, BeforeValidator(check)]


def ListOf(item: Any, *, non_empty: bool = True) -> Any:
    """A YAML list whose every element is an ``item`` (errors name the index: ``lists.test[0]``)."""

    def check(value: Any) -> list:
        if not isinstance(value, list | tuple) or (non_empty and not value):
            raise _must("a non-empty list" if non_empty else "a list", value)
        return list(value)

    return Annotated[list[item], BeforeValidator(check)]


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _must("true or false", value)
    return value


Bool = Annotated[bool, BeforeValidator(_bool)]
"""true or false (not 'yes', not 1)."""


def _sha256(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise _must("a sha256 checksum (64 hex digits) or ''", value)
    return value.lower()


Sha256 = Annotated[str, BeforeValidator(_sha256)]
"""A sha256 checksum (64 hex digits, held lower-case), or '' for none."""


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float | str | bool) for k, v in value.items()
    ):
        raise _must("a mapping of option names to numbers/strings (e.g. {num_block: 23})", value)
    return dict(value)


Options = Annotated[dict[str, int | float | str | bool], BeforeValidator(_options)]
"""A network's constructor arguments (``{num_block: 23}``)."""


def _name_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _must("a mapping of names to names", value)
    return dict(value)


NameMap = Annotated[dict[str, str], BeforeValidator(_name_map)]


def _named_path(value: Any) -> str:
    if not isinstance(value, str) or "=" not in value or not all(value.split("=", 1)):
        raise _must("NAME=PATH (for example Set5=data/benchmarks/Set5)", value)
    return value


NamedPath = Annotated[str, BeforeValidator(_named_path)]
"""``NAME=PATH`` (a test set's name and folder)."""
