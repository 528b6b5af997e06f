"""Sweep scenarios: a trace (a file, or a workload to generate), a base config, hardware.

The schema (``schema_version: 1``) is described in ``SCHEMA.md`` beside this file. A
scenario is read from a file (:func:`load_scenario`) or made of a trace file and the
options ``flexkv-sim replay`` takes (:func:`scenario_from_trace`);
:func:`load_scenario_or_trace` tells which of the two a command was given. It is checked
once, in the parent process; workers receive the frozen :class:`Scenario` and load or
generate its trace once each (:func:`load_trace`), then build one
:class:`~flexkv_engine.replay_input.ReplayInput` per grid point from it
(:func:`prepare_point`) with the steps of ``prepare_replay`` that follow the loading
(``fit_to_config``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path
from typing import Any

from flexkv_engine.config import Config, ConfigError, load_config, schema
from flexkv_engine.config.loader import CONFIG_PATH_VAR, parse_overrides, read_config_file
from flexkv_engine.config.text import parse_json, parse_yaml
from flexkv_engine.replay_input import ReplayInput, fit_to_config
from flexkv_engine.trace import (
    IMPORTERS,
    RequestRecord,
    TraceError,
    TraceHeader,
    detect_format,
    load_requests,
)
from flexkv_engine.trace.files import numbered_lines

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
    # The base config inline or, with config_path, the keys set over that file (--set).
    config: Mapping[str, Any] = field(default_factory=dict)
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
        if self.config_path and self.config:
            out["config_overrides"] = dict(self.config)
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


def scenario_from_trace(
    trace: str | os.PathLike[str],
    *,
    trace_format: str | None = None,
    block_size: int | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    hardware: Sequence[str] = (),
    mode: str = "hitrate",
) -> Scenario:
    """A scenario of one trace file and the options ``flexkv-sim replay`` takes.

    Its base config is the one ``prepare_replay`` loads: ``config_path`` (without one,
    the file ``FLEXKV_CONFIG_PATH`` names, if set) with the ``--set`` ``overrides`` over
    it. The scenario is named after the trace file (``chat`` for ``chat.jsonl.gz``).
    """
    source = os.fspath(trace)
    if config_path is None and os.environ.get(CONFIG_PATH_VAR, "").strip():
        config_path = os.environ[CONFIG_PATH_VAR].strip()
    path = None
    if config_path is not None:
        given = os.path.expanduser(os.fspath(config_path))
        read_config_file(given)  # fails now, naming the file, if unreadable
        path = str(Path(given).resolve())
    if mode not in MODES:
        raise _error(f"unknown mode {mode!r}", "mode", source, f"choose from: {', '.join(MODES)}")
    name = Path(source).name
    name = name[: -len(".gz")] if name.endswith(".gz") else name
    return Scenario(
        name=Path(name).stem or name,
        source=source,
        trace=str(Path(source).resolve()),
        trace_format=trace_format,
        block_size=block_size,
        config_path=path,
        config=parse_overrides(overrides),
        hardware=tuple(hardware),
        mode=mode,
    )


# What a scenario calls each trace option, for the error given a scenario and the option.
_TRACE_OPTIONS = (
    ("--config", "names its own config", "config"),
    ("--set", "names its own config", "config"),
    ("--format", "names its trace's format", "trace_format"),
    ("--block-size", "names its trace's block size", "block_size"),
)
# Scenarios and config files are small; a larger file is not parsed as one.
_DOCUMENT_MAX_BYTES = 1 << 20


def load_scenario_or_trace(
    path: str | os.PathLike[str],
    *,
    trace_format: str | None = None,
    block_size: int | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    hardware: Sequence[str] = (),
) -> Scenario:
    """The scenario a command was given: a scenario file, or a trace file and its options.

    A trace is a file whose first line is of a known trace format (or any file, when
    ``trace_format`` names one); a scenario is a YAML or JSON mapping with
    ``schema_version``. The trace options (``config_path``, ``overrides``,
    ``trace_format``, ``block_size``) apply to a trace only, since a scenario names the
    same things itself; ``hardware``, when given, replaces a scenario's profiles. A
    config file, or a file that is neither, is a :class:`ConfigError` that says which
    inputs are accepted.
    """
    source = os.fspath(path)
    detected, trace_why = _trace_format(source)
    document, document_why = (None, "") if detected is not None else _document(source)
    if document is not None and (
        "schema_version" in document or (document and set(document) <= set(_TOP_KEYS))
    ):
        given = (
            config_path is not None,
            bool(overrides),
            trace_format is not None,
            block_size is not None,
        )
        for (option, names, key), on in zip(_TRACE_OPTIONS, given, strict=True):
            if on:
                raise _error(
                    f"{option} applies to a TRACE",
                    "",
                    source,
                    f"the scenario {names} (key `{key}`)",
                )
        scenario = load_scenario(source)
        return replace(scenario, hardware=tuple(hardware)) if hardware else scenario
    keys = _config_keys(document or {})
    if keys:
        raise ConfigError(
            f"{source} is a config file (keys {', '.join(keys[:3])}): give a scenario YAML, "
            f"or a TRACE with --config {source}"
        )
    if detected is None and trace_format is None:
        raise _error(
            f"neither a scenario ({document_why or 'no `schema_version`'}) nor a trace "
            f"({trace_why})",
            "",
            source,
            "give a scenario (YAML or JSON with `schema_version: 1`), or a TRACE "
            f"(formats: {', '.join(sorted(IMPORTERS))}) with --config CFG",
        )
    return scenario_from_trace(
        source,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
        hardware=hardware,
    )


def _trace_format(path: str) -> tuple[str | None, str]:
    """The trace format of ``path``'s first non-blank line, or ``None`` and why not."""
    lines = numbered_lines(path)
    try:
        first = next(lines, None)
    except TraceError as exc:  # gzip data cut short, not UTF-8
        return None, exc.reason
    finally:
        lines.close()
    if first is None:
        return None, "the file is empty"
    try:
        return detect_format(first[1]), ""
    except TraceError:
        return None, f"line {first[0]} is of no known format"


def _document(path: str) -> tuple[Mapping[str, Any] | None, str]:
    """``path`` parsed as one YAML or JSON mapping, or ``None`` and why it is not one."""
    if os.path.getsize(path) > _DOCUMENT_MAX_BYTES:
        return None, f"larger than {_DOCUMENT_MAX_BYTES >> 20} MiB"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    parse = parse_json if path.endswith(".json") else parse_yaml
    try:
        data = parse(text, path)
    except ConfigError as exc:
        return None, exc.reason
    if not isinstance(data, Mapping):
        return None, "not a mapping at the top"
    return data, ""


def _config_keys(data: Mapping[str, Any]) -> list[str]:
    """The top-level keys of ``data`` that a config file holds (none for a scenario)."""
    known = {*schema.ROOT.fields, *schema.FLAT_KEYS, *schema.ROOT.ignored}
    return [str(k) for k in data if k in known]


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
        return load_config(scenario.config_path, overrides=_merged(scenario.config, tree))
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
    config, requests = fit_to_config(config, recorded, loaded.requests, reblocked)
    return ReplayInput(
        config=config,
        header=loaded.header,
        requests=requests,
        trace_path=loaded.path,
        trace_format=loaded.format,
        recorded_tokens_per_block=recorded,
        load_s=loaded.load_s + time.perf_counter() - begin,
    )
