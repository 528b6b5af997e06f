"""Properties: a written config loads back to the same config, from any source."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from flexkv_engine.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_hash,
    config_to_dict,
    load_config,
    parse_overrides,
    schema,
)
from flexkv_engine.config.text import strip_json_comments

NAMES = st.text(alphabet="abcXYZ019_./:-", min_size=1, max_size=12)


def values(spec: schema.Field) -> st.SearchStrategy[Any]:
    """Valid values of one field, straight from its rules."""
    if spec.kind == "bool":
        strategy: st.SearchStrategy[Any] = st.booleans()
    elif spec.kind == "paths":
        strategy = st.lists(NAMES, min_size=1, max_size=3).map(tuple)
    elif spec.kind == "str":
        strategy = st.sampled_from(list(spec.choices())) if spec.choices else NAMES
    else:
        lo = 0 if spec.lo is None else spec.lo
        hi = 10**9 if spec.hi is None else spec.hi
        if spec.kind == "int":
            strategy = st.integers(int(lo) + int(spec.lo_open), int(hi))
        else:
            strategy = st.floats(lo, hi, exclude_min=spec.lo_open, allow_nan=False)
        if spec.special:
            strategy = strategy | st.sampled_from(spec.special)
    return (strategy | st.none()) if spec.optional else strategy


def section(spec: schema.Section) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            name: section(sub) if isinstance(sub, schema.Section) else values(sub)
            for name, sub in spec.fields.items()
        }
    )


def configs() -> st.SearchStrategy[Config]:
    return section(schema.ROOT).map(config_from_dict)


@given(configs())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_to_dict_and_back(config):
    data = config_to_dict(config, redact=False)
    again = config_from_dict(json.loads(json.dumps(data)))
    assert again == config
    assert config_hash(again) == config_hash(config)


@given(configs())
@settings(max_examples=30)  # PyYAML parses each item; keep the run short
def test_every_value_can_come_from_overrides(config):
    data = config_to_dict(config, redact=False)
    items = [
        f"{section_name}.{key}={json.dumps(value)}"
        for section_name, fields in data.items()
        for key, value in fields.items()
        if not isinstance(value, dict)
    ]
    items += [
        f"serving_config.compute.{k}={v!r}" for k, v in data["serving_config"]["compute"].items()
    ]
    loaded = load_config(overrides=parse_overrides(items), env={})
    assert loaded == config
    assert len(loaded.explicit) == len(items)


@given(section(schema.CACHE))
def test_flat_keys_from_environment(cache):
    env = {}
    for key, value in cache.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            text = ";".join(value)
        elif isinstance(value, bool):
            text = str(int(value))
        else:
            text = repr(value) if isinstance(value, float) else str(value)
        env[schema.ENV_PREFIX + key.upper()] = text
    loaded = load_config(env=env).cache_config
    for key, value in cache.items():
        if value is not None:
            assert getattr(loaded, key) == value, key


@given(configs())
def test_resolve_keeps_values_and_fixes_the_rest(config):
    try:
        resolved = config.resolve(trace_tokens_per_block=32)
    except ConfigError:
        return  # an enabled tier without capacity: covered by the error tests
    assert resolved.is_resolved
    cc, rc = config.cache_config, resolved.cache_config
    assert rc.tokens_per_block == (cc.tokens_per_block or 32)
    for tier in ("ssd", "remote"):
        if rc.tier_enabled(tier):
            assert rc.tier_blocks(tier) > 0
            assert getattr(cc, f"enable_{tier}") is not False
        else:
            assert rc.tier_blocks(tier) == 0
    if cc.num_cpu_blocks is not None:
        assert rc.num_cpu_blocks == cc.num_cpu_blocks
    assert config_from_dict(config_to_dict(resolved, redact=False)) == resolved


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(JSON_VALUES)
def test_comment_stripping_leaves_plain_json_alone(value):
    text = json.dumps(value)
    assert strip_json_comments(text) == text
    commented = f"/* head */ {text} // tail\n"
    assert json.loads(strip_json_comments(commented)) == value
