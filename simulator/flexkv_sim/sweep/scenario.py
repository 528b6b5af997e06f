"""Sweep scenarios: a trace (a file, or a workload to generate), a base config, hardware.

The schema (``schema_version: 1``) is described in ``SCHEMA.md`` beside this file. A
scenario is read and checked once, in the parent process; workers receive the frozen
:class:`Scenario` and load or generate its trace once each (:func:`load_trace`), then
build one :class:`~flexkv_engine.replay_input.ReplayInput` per grid point from it
(:func:`prepare_point`), re-blocking as ``prepare_replay`` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path
from typing import Any

from flexkv_engine.config import Config, ConfigError, load_config
from flexkv_engine.config.loader import CONFIG_PATH_VAR, read_config_file
from flexkv_engine.config.text import parse_json, parse_yaml
from flexkv_engine.core.keys import reblock, reblock_factor
from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.trace import RequestRecord, TraceHeader, load_requests

SCENARIO_SCHEMA_VERSION = 1
MODES = ("hitrate", "timing")
_TOP_KEYS = (
    "schema_version",
    "name",
    "description",
    "trace",
    "trace_format",
    "block_size",
    "workload",
    "config",
    "hardware",
    "mode",
)
_WORKLOAD_KEYS = (
    "name",
    "requests",
    "seed",
    "rate",
    "arrival",
    "burstiness",
    "tokens_per_block",
    "namespace",
    "key_mode",
    "params",
)


@dataclass(frozen=True)
class Scenario:
    """A checked scenario; paths are absolute (relative ones are taken from its file)."""

    name: str
    source: str
    trace: str | None = None
    trace_format: str | None = None
    block_size: int | None = None
    workload: Mapping[str, Any] | None = None
    config_path: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # when given inline
    hardware: tuple[str, ...] = ()
    mode: str = "hitrate"
    description: str = ""

    def describe_trace(self) -> str:
        if self.trace is not None:
            return self.trace
        w = self.workload or {}
        return f"generated {w.get('name')} ({w.get('requests')} requests, seed {w.get('seed')})"

    def to_dict(self) -> dict[str, Any]:
        """As written back into ``results.json``."""
        out: dict[str, Any] = {
            "schema_version": SCENARIO_SCHEMA_VERSION,
            "name": self.name,
            "source": self.source,
            "mode": self.mode,
        }
        if self.trace is not None:
            out.update(trace=self.trace, trace_format=self.trace_format, block_size=self.block_size)
        else:
            out["workload"] = dict(self.workload or {})
        out["config"] = self.config_path if self.config_path else dict(self.config)
        out["hardware"] = list(self.hardware)
        return out


def _error(reason: str, key: str, source: str, hint: str | None = None) -> ConfigError:
    return ConfigError(reason, key_path=key, source=source, hint=hint)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and check a scenario file (YAML, or JSON with ``//`` comments)."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read scenario: {exc}", "", source) from None
    data = parse_json(text, source) if source.endswith(".json") else parse_yaml(text, source)
    if not isinstance(data, Mapping):
        raise _error("expected a mapping at the top", "", source)
    return scenario_from_dict(data, source=source, base_dir=Path(source).parent)


def scenario_from_dict(
    data: Mapping[str, Any], *, source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Check a scenario mapping; relative paths are resolved against ``base_dir``."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for key in data:
        if key not in _TOP_KEYS:
            raise _error("unknown key", str(key), source, f"valid keys: {', '.join(_TOP_KEYS)}")
    if data.get("schema_version") != SCENARIO_SCHEMA_VERSION:
        raise _error(
            f"must be {SCENARIO_SCHEMA_VERSION}, got {data.get('schema_version')!r}",
            "schema_version",
            source,
        )
    has_trace, has_workload = data.get("trace") is not None, data.get("workload") is not None
    if has_trace == has_workload:
        raise _error(
            "give exactly one of trace (a file) and workload (a generator)", "trace", source
        )
    trace = None
    if has_trace:
        trace = str(_path(data["trace"], "trace", source, base))
    workload = _workload(data["workload"], source) if has_workload else None
    config_path, config = None, {}
    raw_config = data.get("config")
    if isinstance(raw_config, str):
        config_path = str(_path(raw_config, "config", source, base))
        read_config_file(config_path)  # fails now, naming the file, if unreadable
    elif isinstance(raw_config, Mapping):
        config = dict(raw_config)
    elif raw_config is not None:
        raise _error("expected a mapping or a path", "config", source)
    hardware = data.get("hardware") or ()
    if isinstance(hardware, str):
        hardware = (hardware,)
    if not isinstance(hardware, Sequence) or not all(isinstance(h, str) for h in hardware):
        raise _error("expected a list of profile names or paths", "hardware", source)
    mode = data.get("mode", "hitrate")
    if mode not in MODES:
        raise _error(f"unknown mode {mode!r}", "mode", source, f"choose from: {', '.join(MODES)}")
    block_size = data.get("block_size")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise _error(f"must be a positive integer, got {block_size!r}", "block_size", source)
    name = data.get("name") or Path(source).stem
    return Scenario(
        name=str(name),
        source=source,
        trace=trace,
        trace_format=data.get("trace_format"),
        block_size=block_size,
        workload=workload,
        config_path=config_path,
        config=config,
        hardware=tuple(hardware),
        mode=mode,
        description=str(data.get("description") or ""),
    )


def _path(value: Any, key: str, source: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise _error("expected a path", key, source)
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise _error(f"no such file: {path}", key, source)
    return path.resolve()


def _workload(value: Any, source: str) -> dict[str, Any]:
    from ..workloads import WORKLOADS

    if not isinstance(value, Mapping):
        raise _error("expected a mapping (name, requests, seed, rate, params)", "workload", source)
    for key in value:
        if key not in _WORKLOAD_KEYS:
            raise _error(
                "unknown key", f"workload.{key}", source, f"valid keys: {', '.join(_WORKLOAD_KEYS)}"
            )
    for key in ("name", "requests", "seed"):
        if key not in value:
            raise _error("required", f"workload.{key}", source)
    if value["name"] not in WORKLOADS:
        raise _error(
            f"unknown workload {value['name']!r}",
            "workload.name",
            source,
            f"choose from: {', '.join(sorted(WORKLOADS))}",
        )
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise _error("expected a mapping", "workload.params", source)
    checked = {**value, "params": dict(params)}
    try:
        _generate(checked)  # checks every argument now; records are made lazily
    except ConfigError as exc:
        raise exc.with_source(source) from None
    except TypeError as exc:
        raise _error(str(exc), "workload", source) from None
    return checked


# ---- in the workers ---------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedTrace:
    """A scenario's trace in memory: requests sorted by time, at the recorded block size."""

    header: TraceHeader
    requests: list[RequestRecord]
    path: str
    format: str
    load_s: float


def load_trace(scenario: Scenario) -> LoadedTrace:
    """Read the scenario's trace file, or generate its workload (once per worker)."""
    begin = time.perf_counter()
    if scenario.trace is not None:
        header, requests = load_requests(
            scenario.trace, format=scenario.trace_format, block_size=scenario.block_size
        )
        return LoadedTrace(
            header,
            requests,
            scenario.trace,
            scenario.trace_format or header.source,
            time.perf_counter() - begin,
        )
    header, records = _generate(scenario.workload or {})
    requests = sorted(records, key=attrgetter("t"))
    return LoadedTrace(
        header, requests, scenario.describe_trace(), "generator", time.perf_counter() - begin
    )


def _generate(workload: Mapping[str, Any]) -> tuple[TraceHeader, Any]:
    from ..workloads import generate

    args = dict(workload)
    name = args.pop("name")
    params = args.pop("params", None) or {}
    args.setdefault("rate", 4.0)
    return generate(name, **args, **params)


def point_config(scenario: Scenario, overrides: Mapping[str, Any]) -> Config:
    """The scenario's base config with one grid point's overrides (not resolved)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        target = tree
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    if scenario.config_path is not None:
        return load_config(scenario.config_path, overrides=tree)
    merged = _merged(scenario.config, tree)
    env = {k: v for k, v in os.environ.items() if k != CONFIG_PATH_VAR}
    return load_config(None, overrides=merged, env=env)


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = _merged(old, value)
        else:
            out[key] = value
    return out


def prepare_point(
    loaded: LoadedTrace, config: Config, reblocked: dict[int, list[RequestRecord]]
) -> ReplayInput:
    """``prepare_replay`` over an already loaded trace; ``reblocked`` caches re-blockings."""
    begin = time.perf_counter()
    recorded = loaded.header.tokens_per_block
    config = config.resolve(trace_tokens_per_block=recorded)
    wanted = config.cache_config.tokens_per_block
    assert wanted is not None
    try:
        factor = reblock_factor(recorded, wanted)
    except ValueError as exc:
        raise ConfigError(
            str(exc), key_path="cache_config.tokens_per_block", source=config.source
        ) from exc
    requests = loaded.requests
    if factor > 1:
        if factor not in reblocked:
            reblocked[factor] = [replace(r, keys=reblock(r.keys, factor)) for r in requests]
        requests = reblocked[factor]
    return ReplayInput(
        config=config,
        header=loaded.header,
        requests=requests,
        trace_path=loaded.path,
        trace_format=loaded.format,
        recorded_tokens_per_block=recorded,
        load_s=loaded.load_s + time.perf_counter() - begin,
    )
