"""Applying the rules of :mod:`flexkv_engine.config.schema` to values."""

from __future__ import annotations

import math
from typing import Any

from ..units import parse_size
from .errors import ConfigError
from .schema import Field


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def _type_error(what: str, value: Any, key_path: str, source: str | None) -> ConfigError:
    return ConfigError(
        f"expected {what}, got {_show(value)} ({type(value).__name__})",
        key_path=key_path,
        source=source,
    )


def _range_text(spec: Field) -> str:
    lo, hi = spec.lo, spec.hi
    if lo is not None and hi is not None:
        text = (
            f"greater than {lo:g} and at most {hi:g}"
            if spec.lo_open
            else (f"between {lo:g} and {hi:g}")
        )
    elif lo is not None:
        text = f"greater than {lo:g}" if spec.lo_open else f"at least {lo:g}"
    else:
        text = f"at most {hi:g}"
    if spec.special:
        text = " or ".join(f"{s:g}" for s in spec.special) + f" or {text}"
    return text


def _in_range(spec: Field, value: float) -> bool:
    if value in spec.special:
        return True
    if spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo):
        return False
    return spec.hi is None or value <= spec.hi


def check(
    spec: Field, value: Any, key_path: str, source: str | None = None, name: str | None = None
) -> Any:
    """Validate ``value`` for ``spec`` and return it in canonical form.

    A bool is never taken for a number nor a number for a bool. An int is accepted for a
    float (and converted); an integral float such as JSON's ``1e6`` is accepted for an
    int. Choices are matched case-insensitively and stored in lower case. ``name`` is
    the key's name for messages (default: the last part of ``key_path``).
    """
    if value is None:
        if spec.optional:
            return None
        raise ConfigError("must not be null", key_path=key_path, source=source)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _type_error("true or false", value, key_path, source)
        return value
    if spec.kind == "gib":
        return _check_number(spec, _gib(value, key_path, source), key_path, source)
    if spec.kind in ("int", "float"):
        return _check_number(spec, value, key_path, source)
    if spec.kind == "paths":
        return _check_paths(value, key_path, source)
    if not isinstance(value, str):
        raise _type_error("a string", value, key_path, source)
    if spec.choices is None:
        if not value:
            raise ConfigError("must not be empty", key_path=key_path, source=source)
        return value
    choice = value.strip().lower().removeprefix("torch.")
    choice = spec.aliases.get(choice, choice)
    valid = spec.choices()
    if choice not in valid:
        raise ConfigError(
            f"unknown {name or key_path.rsplit('.', 1)[-1]} {value!r}",
            key_path=key_path,
            source=source,
            hint=f"choose from: {', '.join(valid)}",
        )
    return choice


def _gib(value: Any, key_path: str, source: str | None) -> Any:
    """A capacity in GiB: a number, or a size with its unit (``"64GiB"``, ``"500GB"``)."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)  # "16" is 16 GiB, as FLEXKV_CPU_CACHE_GB=16 means
    except ValueError:
        pass
    try:
        return parse_size(value, key_path) / 2**30
    except ValueError as exc:
        raise ConfigError(str(exc).split(": ", 1)[-1], key_path=key_path, source=source,
                          hint="a number of GiB, or a size such as 64GiB or 500GB") from None


def _check_number(spec: Field, value: Any, key_path: str, source: str | None) -> int | float:
    what = "an integer" if spec.kind == "int" else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(what, value, key_path, source)
    if not math.isfinite(value):
        raise ConfigError(f"must be finite, got {value}", key_path=key_path, source=source)
    number: int | float = value
    if spec.kind in ("float", "gib"):
        number = float(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise _type_error(what, value, key_path, source)
        number = int(value)
    if not _in_range(spec, number):
        raise ConfigError(
            f"must be {_range_text(spec)}, got {number:g}", key_path=key_path, source=source
        )
    return number


def _check_paths(value: Any, key_path: str, source: str | None) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[Any] = value.split(";")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        what = "a list of directories or a ';'-separated string"
        raise _type_error(what, value, key_path, source)
    paths = []
    for item in items:
        if not isinstance(item, str):
            raise _type_error("a directory name", item, key_path, source)
        if item.strip():
            paths.append(item.strip())
    if not paths:
        raise ConfigError("needs at least one directory", key_path=key_path, source=source)
    return tuple(paths)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_env(spec: Field, text: str, var: str, name: str) -> Any:
    """Convert the text of environment variable ``var`` (for key ``name``) to a checked value."""
    raw = text.strip()
    value: Any = raw
    try:
        if spec.kind == "bool":
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError
            value = raw.lower() in _TRUE
        elif spec.kind == "int":
            value = int(raw)
        elif spec.kind == "float":
            value = float(raw)
    except ValueError:
        what = {"bool": "0, 1, true or false", "int": "an integer", "float": "a number"}[
            spec.kind
        ]
        raise ConfigError(
            f"expected {what}, got {text!r}", key_path=var, source="environment"
        ) from None
    return check(spec, value, var, "environment", name)
