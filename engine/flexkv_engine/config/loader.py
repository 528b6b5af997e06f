"""Reading a configuration from files, the environment and ``--set`` overrides.

Each source becomes a *layer*: a nested dict in canonical form (``cache_config``,
``model_config``, ``serving_config``; keys by their canonical names) holding only the
keys that source set, already checked. Layers merge in the order environment, file,
overrides, so a later one wins. Nothing here creates directories or writes files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import catalog, checks, schema
from .errors import ConfigError, FlexKVConfigWarning, unknown_key
from .model import CacheConfig, ComputeModel, Config, ModelConfig, ServingConfig
from .text import parse_json, parse_yaml, parse_yaml_value

CONFIG_PATH_VAR = "FLEXKV_CONFIG_PATH"
OVERRIDE_SOURCE = "--set"
ENV_SOURCE = "environment"

Layer = dict[str, Any]


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load a configuration: overrides over the file over the environment over defaults.

    ``path`` is a JSON (``//`` and ``/* */`` comments allowed) or YAML file, chosen by
    its extension; other extensions are tried as JSON, then YAML. Without a path, the
    file named by ``FLEXKV_CONFIG_PATH`` is read, if set. ``env`` defaults to
    ``os.environ``; pass ``{}`` to ignore the environment. ``overrides`` are
    ``key.path=value`` strings (see :func:`parse_overrides`) or their parsed dict.

    The result is not resolved: call :meth:`Config.resolve` once the trace's block size
    is known. FlexKV keys with no effect here produce one ``FlexKVConfigWarning``.
    """
    environ = os.environ if env is None else env
    ignored: list[str] = []
    layers = [_env_layer(environ, ignored)]
    source = None
    if path is None and environ.get(CONFIG_PATH_VAR, "").strip():
        path = environ[CONFIG_PATH_VAR].strip()
    if path is not None:
        source = os.fspath(path)
        layers.append(_normalise(read_config_file(source), source, ignored))
    if isinstance(overrides, str):
        overrides = [overrides]
    raw = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    layers.append(_normalise(raw, OVERRIDE_SOURCE, ignored))
    _warn_ignored(ignored)
    return _build(_merge(layers), source)


def config_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> Config:
    """Build a configuration from a mapping shaped like a config file (no environment)."""
    ignored: list[str] = []
    layer = _normalise(data, source, ignored)
    _warn_ignored(ignored)
    return _build(_merge([layer]), source)


def read_config_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Parse a config file into a mapping, without interpreting its keys."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read config file: {reason}", source=source) from None
    suffix = Path(source).suffix.lower()
    if suffix == ".json":
        data = parse_json(text, source)
    elif suffix in (".yaml", ".yml"):
        data = parse_yaml(text, source)
    else:
        try:
            data = parse_json(text, source)
        except ConfigError as json_error:
            try:
                data = parse_yaml(text, source)
            except ConfigError as yaml_error:
                raise ConfigError(
                    f"neither JSON ({json_error.reason}) nor YAML ({yaml_error.reason})",
                    source=source,
                ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a mapping at the top, got {type(data).__name__}", source=source
        )
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key.path=value`` strings, as given to ``--set``, into a nested dict.

    The key is a dotted path (``cache_config.evict_ratio``, ``serving_config.compute.
    decode_step_s``) or a flat FlexKV key (``cpu_cache_gb``). The value is read as a
    YAML scalar or flow collection: ``32``, ``0.5``, ``true``, ``null``, ``[a, b]``. A
    later item with the same key path wins; one setting given under two spellings (flat
    and nested, or an alias) is an error. Keys and values are checked here; errors name
    the offending item.
    """
    raw: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"expected key.path=value, got {item!r}", source=OVERRIDE_SOURCE)
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"bad key path in {item!r}", source=OVERRIDE_SOURCE)
        target = raw
        for i, part in enumerate(parts[:-1]):
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"{item!r} conflicts with an earlier value for {'.'.join(parts[: i + 1])}",
                    source=OVERRIDE_SOURCE,
                )
            target = nxt
        target[parts[-1]] = parse_yaml_value(text, item)
    _normalise(raw, OVERRIDE_SOURCE, [])  # check now, so the error names the item
    return raw


def _warn_ignored(ignored: list[str]) -> None:
    """One warning for all tolerated FlexKV keys, pointing at the caller of the API."""
    if ignored:
        warnings.warn(
            "FlexKV settings with no effect in FlexKV Twin, ignored: " + "; ".join(ignored),
            FlexKVConfigWarning,
            stacklevel=3,
        )


def _env_layer(environ: Mapping[str, str], ignored: list[str]) -> Layer:
    """Read the ``FLEXKV_*`` variable of every flat key. An empty one counts as unset;
    other ``FLEXKV_*`` variables are not ours to judge (FlexKV may share the shell)."""
    section: dict[str, Any] = {}
    found: dict[str, str] = {}
    for var, name in schema.ENV_VARS.items():
        text = environ.get(var, "")
        if not text.strip():
            continue
        if name in found:
            raise ConfigError(f"also set as {found[name]}", key_path=var, source=ENV_SOURCE)
        spec = schema.CACHE.fields[name]
        assert isinstance(spec, schema.Field)
        section[name] = checks.parse_env(spec, text, var, name)
        found[name] = var
    tolerated = sorted(
        var
        for key in schema.FLEXKV_IGNORED_CACHE_KEYS
        if environ.get(var := schema.ENV_PREFIX + key.upper(), "").strip()
    )
    if tolerated:
        ignored.append(f"{ENV_SOURCE}: {', '.join(tolerated)}")
    return {"cache_config": section} if section else {}


def _normalise(data: Mapping[str, Any], source: str | None, ignored: list[str]) -> Layer:
    """Turn a file-shaped mapping into a checked layer; collect tolerated FlexKV keys."""
    out: Layer = {}
    seen: dict[str, str] = {}
    skipped: list[str] = []
    for key, value in data.items():
        if key in schema.ROOT.fields:
            if value is None:  # an empty YAML section
                continue
            section = schema.ROOT.fields[key]
            assert isinstance(section, schema.Section)
            _walk(section, value, key, [key], out, seen, skipped, source)
        elif key in schema.FLAT_KEYS:
            _walk(schema.CACHE, {key: value}, key, ["cache_config"], out, seen, skipped, source, "")
        elif key in schema.ROOT.ignored:
            skipped.append(key)
        else:
            valid = [*schema.ROOT.fields, *schema.FLAT_KEYS]
            raise unknown_key(str(key), str(key), valid, source)
    if skipped:
        ignored.append(f"{source}: {', '.join(skipped)}" if source else ", ".join(skipped))
    return out


def _walk(
    section: schema.Section,
    value: Any,
    written: str,
    path: list[str],
    out: Layer,
    seen: dict[str, str],
    skipped: list[str],
    source: str | None,
    prefix: str | None = None,
) -> None:
    """Check ``value`` against ``section``; ``written`` is the key path as the user wrote
    it, ``path`` the canonical one. ``prefix`` is how child keys are written (``written``
    plus a dot unless given)."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"expected a mapping, got {type(value).__name__}", key_path=written, source=source
        )
    prefix = f"{written}." if prefix is None else prefix
    for key, item in value.items():
        key_text = f"{prefix}{key}"
        name = section.aliases.get(key, key)
        spec = section.fields.get(name)
        if spec is None:
            if key in section.ignored:
                skipped.append(key_text)
                continue
            raise unknown_key(str(key), key_text, section.valid_keys(), source)
        canonical = ".".join([*path, name])
        if isinstance(spec, schema.Section):
            if item is not None:
                _walk(spec, item, key_text, [*path, name], out, seen, skipped, source)
            continue
        if canonical in seen:
            raise ConfigError(
                f"set twice (also as {seen[canonical]})", key_path=key_text, source=source
            )
        seen[canonical] = key_text
        target = out
        for part in path:
            target = target.setdefault(part, {})
        target[name] = checks.check(spec, item, key_text, source)


def _merge(layers: Iterable[Layer]) -> Layer:
    merged: Layer = {}
    for layer in layers:
        cache = layer.get("cache_config", {})
        base = merged.get("cache_config", {})
        for pair in schema.CAPACITY_PAIRS:
            if any(k in cache for k in pair):
                for k in pair:
                    base.pop(k, None)
        # A layer that names a model replaces the layout keys of the layers below it;
        # its own layout keys still win over the named layout (see _build).
        if layer.get("model_config", {}).get("model") is not None:
            for k in catalog.LAYOUT_KEYS:
                merged.get("model_config", {}).pop(k, None)
        _deep_update(merged, layer)
    return merged


def _deep_update(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _build(merged: Layer, source: str | None) -> Config:
    serving = dict(merged.get("serving_config", {}))
    compute = ComputeModel(**serving.pop("compute", {}))
    model = dict(merged.get("model_config", {}))
    if model.get("model") is not None:  # a checked name: the layout exists
        model = {**catalog.layout(model["model"]), **model}
    return Config(
        cache_config=CacheConfig(**merged.get("cache_config", {})),
        model_config=ModelConfig(**model),
        serving_config=ServingConfig(compute=compute, **serving),
        explicit=frozenset(_leaves(merged)),
        source=source,
    )
