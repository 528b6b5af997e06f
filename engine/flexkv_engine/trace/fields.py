"""Checks for single values read from a trace line.

Each helper takes the decoded JSON object and a field name, and returns the value in
its canonical Python type or raises :class:`TraceError` without a location; the reading
loop adds the file and line. JSON booleans are never accepted as numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .errors import TraceError

#: Largest token count, block count or other count a trace may state.
MAX_COUNT = 10**8
#: Largest byte count of one transfer (256 TiB).
MAX_BYTES = 2**48
#: Largest block size in tokens.
MAX_TOKENS_PER_BLOCK = 2**20
#: Keys are non-negative integers below this bound (128-bit hashes).
KEY_LIMIT = 2**128

_MISSING: Any = object()
_ONLY_INT = frozenset({int})


# The C scanner behind json.loads, called directly: reading a large trace is dominated by
# JSON parsing, and skipping json.loads' wrapper (type checks, whitespace regex, end
# check) saves about a third of it. Anything unusual falls back to json.loads, which
# then gives the value or the standard error message.
_scan_once: Callable[[str, int], tuple[Any, int]]
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


def parse_object(text: str) -> dict[str, Any]:
    """Parse one line of JSON that must be an object."""
    try:
        obj, end = _scan_once(text, 0)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("extra data")
    except (StopIteration, ValueError):
        try:
            obj = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, and ints beyond the digit limit
            raise TraceError(f"malformed JSON: {exc}") from None
    if type(obj) is not dict:
        raise TraceError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def required(obj: dict[str, Any], name: str) -> Any:
    try:
        return obj[name]
    except KeyError:
        raise TraceError(f"missing required field '{name}'") from None


def count(obj: dict[str, Any], name: str, limit: int = MAX_COUNT, default: Any = _MISSING) -> int:
    """A non-negative integer no larger than ``limit``."""
    value = obj.get(name, default)
    if value is _MISSING:
        raise TraceError(f"missing required field '{name}'")
    if type(value) is not int or value < 0 or value > limit:
        raise TraceError(f"{name} must be an integer in [0, {limit}], got {value!r}")
    return value


def seconds(obj: dict[str, Any], name: str) -> float:
    """A required, finite, non-negative number of seconds, returned as float."""
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        raise TraceError(f"missing required field '{name}'")
    return as_seconds(value, name)


def optional_seconds(obj: dict[str, Any], name: str) -> float | None:
    """Like :func:`seconds`, but absent or null gives ``None``."""
    value = obj.get(name)
    return None if value is None else as_seconds(value, name)


def as_seconds(value: Any, name: str, unit: str = "seconds") -> float:
    """``value`` as a float if it is a finite, non-negative JSON number."""
    if type(value) is float:
        if value >= 0.0 and value != math.inf:  # NaN fails the first test
            return value
    elif type(value) is int and value >= 0:
        return float(value)
    raise TraceError(f"{name} must be a finite non-negative number of {unit}, got {value!r}")


def choice(obj: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = required(obj, name)
    if type(value) is not str or value not in choices:
        raise TraceError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def request_id(obj: dict[str, Any], name: str = "id") -> str:
    """A request id: a non-empty string, or an integer (stored as its decimal string)."""
    value = required(obj, name)
    if type(value) is str and value:
        return value
    if type(value) is int:
        return str(value)
    raise TraceError(f"{name} must be a non-empty string or an integer, got {value!r}")


def optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise TraceError(f"{name} must be a string or null, got {value!r}")


def optional_dict(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    value = obj.get(name, default)
    if value is None or type(value) is dict:
        return value
    raise TraceError(f"{name} must be an object or null, got {type(value).__name__}")


def keys(value: Any, name: str) -> list[int]:
    """A list of block keys: non-negative integers below 2**128.

    This runs once per request over every key, so the common case is three C-level
    passes (types, min, max); the slow search for the culprit runs only on failure.
    """
    if type(value) is list:
        if not value or (
            _ONLY_INT.issuperset(map(type, value)) and min(value) >= 0 and max(value) < KEY_LIMIT
        ):
            return value
        for i, key in enumerate(value):
            if type(key) is not int or not 0 <= key < KEY_LIMIT:
                raise TraceError(
                    f"{name} must be a list of non-negative integers below 2**128; "
                    f"{name}[{i}] is {key!r}"
                )
    raise TraceError(f"{name} must be a list of non-negative integers below 2**128")


def block_size_or(block_size: int | None, default: int) -> int:
    """The caller's ``block_size`` (tokens per key), checked, or ``default`` when None.

    A bad value is the caller's mistake, not the file's, so it raises ValueError.
    """
    if block_size is None:
        return default
    if type(block_size) is not int or not 1 <= block_size <= MAX_TOKENS_PER_BLOCK:
        raise ValueError(
            f"block_size must be an integer in [1, {MAX_TOKENS_PER_BLOCK}], got {block_size!r}"
        )
    return block_size


def check_key_count(
    keys_: list[int], num_tokens: int, tokens_per_block: int, keys_name: str, tokens_name: str
) -> None:
    need = -(-num_tokens // tokens_per_block)
    if len(keys_) != need:
        raise TraceError(
            f"{keys_name} has {len(keys_)} entries but {tokens_name}={num_tokens} needs "
            f"ceil({num_tokens}/{tokens_per_block}) = {need} blocks of {tokens_per_block} tokens"
        )
