"""FlexKV's recorded configuration, mapped onto the keys our config accepts.

FlexKV's tracer records a ``config`` event whose ``data`` holds ``model_config``,
``cache_config``, ``global_config`` (settings FlexKV reads from its environment) and
``gpu_layout``. A value goes into our header's ``cache_config`` / ``model_config`` only
when our config knows its key (by name or alias) and accepts its value; everything else
is listed as unmapped, and the whole event stays in the header's ``meta``.
"""

from __future__ import annotations

from typing import Any

from ...config.checks import check
from ...config.errors import ConfigError
from ...config.schema import CACHE, MODEL, Field, Section
from ..errors import TraceError
from ..fields import MAX_TOKENS_PER_BLOCK

# Where each of our sections takes its values from, later sources winning.
_SOURCES = {
    "cache_config": (CACHE, ("global_config", "cache_config")),
    "model_config": (MODEL, ("model_config",)),
}


def _canonical(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # paths come back as tuples


def map_config(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """Our ``cache_config`` and ``model_config`` from a config event's ``data``.

    Returns ``({"cache_config": ..., "model_config": ...}, unmapped)``: a section with
    no accepted key is None; ``unmapped`` names the left-out keys as ``part.key``.
    """
    mapped: dict[str, dict[str, Any] | None] = {}
    unmapped: list[str] = []
    for ours, (section, parts) in _SOURCES.items():
        values: dict[str, Any] = {}
        for part in parts:
            raw = data.get(part)
            if raw is None:
                continue
            if type(raw) is not dict:
                raise TraceError(f"config data.{part} must be an object, got {raw!r}")
            for key, value in raw.items():
                if _accept(section, key, value, values):
                    continue
                unmapped.append(f"{part}.{key}")
        mapped[ours] = values or None
    return mapped, unmapped


def _accept(section: Section, key: str, value: Any, into: dict[str, Any]) -> bool:
    name = section.aliases.get(key, key)
    spec = section.fields.get(name)
    if not isinstance(spec, Field):
        return False
    try:
        into[name] = _canonical(check(spec, value, name))
    except ConfigError:
        return False
    return True


def recorded_block_size(data: dict[str, Any]) -> int:
    """``data.cache_config.tokens_per_block`` of a config event, checked."""
    cache = data.get("cache_config")
    value = cache.get("tokens_per_block") if type(cache) is dict else None
    if type(value) is not int or not 1 <= value <= MAX_TOKENS_PER_BLOCK:
        raise TraceError(
            "config event needs data.cache_config.tokens_per_block, an integer in "
            f"[1, {MAX_TOKENS_PER_BLOCK}]; got {value!r}"
        )
    return value
