"""Sizes, rates and durations with units (``64GiB``, ``25GB/s``, ``8us``), torch-free.

Decimal prefixes are powers of 1000 and binary ones powers of 1024, as usual: ``1GB`` is
1e9 bytes, ``1GiB`` is 2**30. A bare number is taken as bytes, bytes/s or seconds.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-zA-Z]*)\s*$")
_RATE_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-zA-Z]*?)\s*(?:/\s*s|ps)?\s*$")
_TIME_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-zA-Zµ]*)\s*$")


def _number(value: object, what: str) -> float | None:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{what}: must be >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a number or a string with a unit, got {value!r}")
    return None


def parse_size(value: object, what: str = "size") -> int:
    """Bytes from ``4096``, ``"64GiB"``, ``"2 MiB"`` or ``"1.5GB"``."""
    number = _number(value, what)
    if number is not None:
        return int(number)
    match = _SIZE_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{what}: cannot read {value!r} as a size (e.g. 4096, 64GiB, 1.5GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_rate(value: object, what: str = "rate") -> float:
    """Bytes per second from ``"25GB/s"``, ``"12 GiB/s"``, ``"25GBps"`` or a number."""
    number = _number(value, what)
    if number is not None:
        return number
    match = _RATE_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{what}: cannot read {value!r} as a rate (e.g. 25GB/s, 12GiB/s)")
    return float(match.group(1)) * _SIZE_UNITS[unit]


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from ``"8us"``, ``"1.5ms"``, ``"2s"`` or a number of seconds."""
    number = _number(value, what)
    if number is not None:
        return number
    match = _TIME_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _TIME_UNITS:
        raise ValueError(f"{what}: cannot read {value!r} as a duration (e.g. 8us, 1.5ms, 2s)")
    return float(match.group(1)) * _TIME_UNITS[unit]
