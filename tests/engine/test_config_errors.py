"""Bad configurations: every error names the key path and what would be valid."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from flexkv_engine.config import (
    CacheConfig,
    Config,
    ConfigError,
    FlexKVConfigWarning,
    ModelConfig,
    load_config,
    parse_overrides,
    policy_names,
)


def load_json(tmp_path: Path, data: object, **kwargs) -> Config:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    kwargs.setdefault("env", {})
    return load_config(path, **kwargs)


BAD_CACHE_VALUES = [
    ("evict_ratio", 1.5, "must be between 0 and 1, got 1.5"),
    ("evict_ratio", -0.1, "must be between 0 and 1, got -0.1"),
    ("evict_start_threshold", 0, "must be greater than 0 and at most 1, got 0"),
    ("evict_start_threshold", 1.01, "must be greater than 0 and at most 1, got 1.01"),
    ("tokens_per_block", 0, "must be at least 1, got 0"),
    ("transfer_sms_h2d", 0, "must be at least 1, got 0"),
    ("transfer_sms_d2h", -2, "must be at least 1, got -2"),
    ("ssd_cache_iouring_entries", -1, "must be at least 0, got -1"),
    ("store_after_hits", -1, "must be at least 0, got -1"),
    ("num_cpu_blocks", -5, "must be at least 0, got -5"),
    ("ssd_cache_gb", -1, "must be at least 0, got -1"),
    ("hit_reward_seconds", -1.0, "must be at least 0, got -1"),
    ("max_file_size_gb", 0, "must be -1 or greater than 0, got 0"),
    ("num_cpu_blocks", True, "expected an integer, got true (bool)"),
    ("num_ssd_blocks", 1.5, "expected an integer, got 1.5 (float)"),
    ("use_ce_transfer_h2d", 1, "expected true or false, got 1 (int)"),
    ("evict_ratio", "0.5", "expected a number, got '0.5' (str)"),
    ("evict_ratio", None, "must not be null"),
    ("ssd_cache_dir", [], "needs at least one directory"),
    ("remote_backend", "s3", "unknown remote_backend 's3'; choose from: fs, redis"),
]


@pytest.mark.parametrize(("key", "value", "reason"), BAD_CACHE_VALUES)
def test_bad_value_in_nested_form(tmp_path, key, value, reason):
    with pytest.raises(ConfigError) as info:
        load_json(tmp_path, {"cache_config": {key: value}})
    assert str(info.value) == f"{tmp_path / 'config.json'}: cache_config.{key}: {reason}"
    assert info.value.key_path == f"cache_config.{key}"


@pytest.mark.parametrize(("key", "value", "reason"), BAD_CACHE_VALUES[:3])
def test_bad_value_in_flat_form_names_the_key_as_written(tmp_path, key, value, reason):
    with pytest.raises(ConfigError, match=re.escape(f": {key}: {reason}")):
        load_json(tmp_path, {key: value})


@pytest.mark.parametrize(("key", "value", "reason"), BAD_CACHE_VALUES)
def test_same_rules_when_built_in_code(key, value, reason):
    with pytest.raises(ConfigError, match=re.escape(f"cache_config.{key}: {reason}")):
        CacheConfig(**{key: value})


def test_unknown_eviction_policy_lists_the_registry(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_json(tmp_path, {"cache_config": {"eviction_policy": "lruu"}})
    assert str(info.value).endswith(
        "cache_config.eviction_policy: unknown eviction_policy 'lruu'; choose from: "
        + ", ".join(policy_names())
    )
    assert {"fifo", "filo", "lfu", "lru", "mru", "slru"} <= set(policy_names())


def test_policy_names_follow_the_core_registry():
    from flexkv_engine.core.policies import POLICIES

    assert policy_names() == sorted(POLICIES)
    for name in POLICIES:
        assert CacheConfig(eviction_policy=name.upper()).eviction_policy == name


def test_unknown_dtype(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"model_config\.dtype: unknown dtype 'int4'; choose from: "
        r"bfloat16, float16, float32, float8_e4m3fn",
    ):
        load_json(tmp_path, {"model_config": {"dtype": "int4"}})


def test_model_and_serving_ranges():
    with pytest.raises(ConfigError, match=r"model_config\.num_layers: must be at least 1"):
        ModelConfig(num_layers=0)
    with pytest.raises(ConfigError, match=r"serving_config\.compute\.decode_step_s"):
        load_config(overrides=["serving_config.compute.decode_step_s=-1"], env={})


@pytest.mark.parametrize(
    ("data", "key_path", "suggestion"),
    [
        ({"cache_config": {"evict_ratoi": 0.1}}, "cache_config.evict_ratoi", "evict_ratio"),
        ({"cache_confg": {}}, "cache_confg", "cache_config"),
        ({"cpu_cache_gib": 8}, "cpu_cache_gb", None),
        (
            {"serving_config": {"compute": {"decode_s": 1}}},
            "serving_config.compute.decode_s",
            "decode_step_s",
        ),
    ],
)
def test_unknown_key_suggests_the_closest(tmp_path, data, key_path, suggestion):
    with pytest.raises(ConfigError) as info:
        load_json(tmp_path, data)
    message = str(info.value)
    if suggestion:
        assert info.value.key_path == key_path
        assert f"did you mean '{suggestion}'?" in message
    assert "unknown key" in message and "valid keys:" in message


def test_a_key_set_twice_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"cache_config\.ssd_cache_iouring_entries: set twice"):
        load_json(
            tmp_path, {"iouring_entries": 8, "cache_config": {"ssd_cache_iouring_entries": 16}}
        )
    path = tmp_path / "dup.json"
    path.write_text('{"evict_ratio": 0.1, "evict_ratio": 0.2}')
    with pytest.raises(ConfigError, match="duplicate key 'evict_ratio'"):
        load_config(path, env={})
    path = tmp_path / "dup.yaml"
    path.write_text("evict_ratio: 0.1\nevict_ratio: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: duplicate key 'evict_ratio' at line 2"):
        load_config(path, env={})


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.json: cannot read config file"):
        load_config(tmp_path / "missing.json", env={})
    path = tmp_path / "bad.json"
    path.write_text('{\n  "evict_ratio": 0.1\n  "tokens_per_block": 16\n}')
    with pytest.raises(ConfigError, match="invalid JSON at line 3, column 3"):
        load_config(path, env={})
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top, got list"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("var", "text", "fragment"),
    [
        (
            "FLEXKV_EVICT_RATIO",
            "abc",
            "environment: FLEXKV_EVICT_RATIO: expected a number, got 'abc'",
        ),
        ("FLEXKV_USE_CE_TRANSFER_H2D", "maybe", "FLEXKV_USE_CE_TRANSFER_H2D: expected 0, 1, true"),
        ("FLEXKV_NUM_CPU_BLOCKS", "1.5", "FLEXKV_NUM_CPU_BLOCKS: expected an integer, got '1.5'"),
        (
            "FLEXKV_EVICT_START_THRESHOLD",
            "0",
            "FLEXKV_EVICT_START_THRESHOLD: must be greater than 0",
        ),
        (
            "FLEXKV_EVICTION_POLICY",
            "lruu",
            "FLEXKV_EVICTION_POLICY: unknown eviction_policy 'lruu'",
        ),
    ],
)
def test_bad_environment_value_names_the_variable(var, text, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        load_config(env={var: text})
    assert info.value.key_path == var


def test_alias_and_name_both_in_environment():
    with pytest.raises(ConfigError, match="also set as"):
        load_config(env={"FLEXKV_IORING_ENTRIES": "8", "FLEXKV_SSD_CACHE_IOURING_ENTRIES": "16"})


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        (
            "cache_config.evict_ratio",
            "--set: expected key.path=value, got 'cache_config.evict_ratio'",
        ),
        ("cache_config.evict_ratoi=0.1", "--set: cache_config.evict_ratoi: unknown key"),
        ("cache_config..x=1", "bad key path"),
        ("evict_ratio=2", "--set: evict_ratio: must be between 0 and 1, got 2"),
        ("tokens_per_block=[1, 2", "cannot parse the value of 'tokens_per_block=[1, 2'"),
    ],
)
def test_bad_override_names_the_item(item, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_overrides([item])
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(overrides=[item], env={})


def test_conflicting_overrides():
    with pytest.raises(ConfigError, match="conflicts with an earlier value"):
        parse_overrides(["cache_config=null", "cache_config.evict_ratio=0.1"])


def test_flexkv_keys_that_do_not_apply_warn_once(tmp_path):
    data = {
        "enable_cpu": True,
        "enable_gds": False,
        "index_accel": True,
        "cpu_layout": "BLOCKFIRST",
        "cache_config": {"server_client_mode": False, "evict_ratio": 0.1},
        "model_config": {"tp_size": 2, "dp_size": 1},
    }
    env = {"FLEXKV_TRACE_MAX_FILES": "5"}
    with pytest.warns(FlexKVConfigWarning) as record:
        config = load_json(tmp_path, data, env=env, overrides=["iouring_flags=0"])
    assert len(record) == 1
    message = str(record[0].message)
    for name in (
        "enable_cpu",
        "enable_gds",
        "index_accel",
        "cpu_layout",
        "cache_config.server_client_mode",
        "model_config.tp_size",
        "model_config.dp_size",
        "FLEXKV_TRACE_MAX_FILES",
        "iouring_flags",
    ):
        assert name in message
    assert "evict_ratio" not in message
    assert config.cache_config.evict_ratio == 0.1
    assert not any("tp_size" in key for key in config.explicit)


def test_clean_config_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_json(tmp_path, {"cache_config": {"evict_ratio": 0.1}}, env={"FLEXKV_OTHER": "1"})


def test_bad_trace_block_size():
    with pytest.raises(ConfigError, match="trace_tokens_per_block"):
        Config().resolve(trace_tokens_per_block=0)
