"""Sweep grids: ``--grid key.path=v1,v2,...`` options and their cartesian product.

A key is a config key path as ``--set`` takes it (``cache_config.num_cpu_blocks``, or a
flat FlexKV key such as ``cpu_cache_gb``), or ``hardware``, whose values are profile
lists joined with ``+`` (``h100-sxm-pcie5+ssd-gen5``). Values are YAML scalars
(``4096``, ``0.5``, ``true``, ``lru``), separated by commas.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from flexkv_engine.config import ConfigError, load_config
from flexkv_engine.config.text import parse_yaml_value

HARDWARE_KEY = "hardware"
GRID_SOURCE = "--grid"


def parse_grid(items: Iterable[str]) -> list[tuple[str, list[Any]]]:
    """``key=v1,v2`` strings as ``(key, values)``; keys and values are checked here."""
    axes: list[tuple[str, list[Any]]] = []
    seen: set[str] = set()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"expected key.path=v1,v2,..., got {item!r}", source=GRID_SOURCE)
        if key in seen:
            raise ConfigError("given twice", key_path=key, source=GRID_SOURCE)
        seen.add(key)
        raw = [v.strip() for v in text.split(",")]
        if any(not v for v in raw):
            raise ConfigError(f"empty value in {item!r}", key_path=key, source=GRID_SOURCE)
        if key == HARDWARE_KEY:
            values: list[Any] = raw
        else:
            values = [parse_yaml_value(v, item) for v in raw]
            for value in values:  # a bad key or value fails here, naming the item
                try:
                    load_config(None, overrides=_tree(key, value), env={})
                except ConfigError as exc:
                    raise ConfigError(
                        exc.reason, key_path=exc.key_path or key, source=GRID_SOURCE, hint=exc.hint
                    ) from None
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"a value repeats in {item!r}", key_path=key, source=GRID_SOURCE)
        axes.append((key, values))
    return axes


def _tree(key: str, value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    target = tree
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return tree


def grid_points(axes: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination, the last axis varying fastest; one empty point for no axes."""
    keys = [k for k, _ in axes]
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(values for _, values in axes))
    ]


def split_point(point: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """A point's config overrides and its hardware profiles (None: the scenario's)."""
    overrides = {k: v for k, v in point.items() if k != HARDWARE_KEY}
    hardware = point.get(HARDWARE_KEY)
    return overrides, (tuple(hardware.split("+")) if hardware is not None else None)
