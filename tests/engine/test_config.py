"""Loading, precedence, resolution and serialisation of the configuration."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flexkv_engine.config import (
    GIB,
    CacheConfig,
    ComputeModel,
    Config,
    ConfigError,
    ModelConfig,
    config_hash,
    config_to_dict,
    load_config,
    parse_overrides,
)

# Default model (Llama-3-8B: 32 layers, 8 KV heads, head size 128, bf16): 128 KiB per
# token, so a 16-token block is 2 MiB and 16 GiB of CPU cache holds 8192 blocks.
BLOCK_BYTES = 32 * 2 * 8 * 128 * 2 * 16
DEFAULT_CPU_BLOCKS = 16 * GIB // BLOCK_BYTES


def write(tmp_path: Path, text: str, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, name: str = "config.json", **kwargs) -> Config:
    kwargs.setdefault("env", {})
    return load_config(write(tmp_path, text, name), **kwargs)


def resolved(tmp_path: Path, text: str) -> CacheConfig:
    return load(tmp_path, text).resolve().cache_config


# --- snippets from FlexKV's operator guide, as written ------------------------------

MORE_CPU = (
    '{"cache_config": {"num_cpu_blocks": 100000, // more CPU cache\n"num_ssd_blocks": 1000000}}'
)
COPY_ENGINE = """{"cache_config": {"use_ce_transfer_h2d": true, "use_ce_transfer_d2h": true,
    "transfer_sms_h2d": 16, "transfer_sms_d2h": 16}}"""
ENABLE_SSD = (
    '{"cache_config": {"enable_ssd": true, "num_cpu_blocks": 10000, "num_ssd_blocks": 1000000}}'
)
ENABLE_REMOTE = """{"cache_config": {"enable_remote": true, "num_ssd_blocks": 100000,
    "num_remote_blocks": 10000000}}"""
TRACE = '{"cache_config": {"enable_trace": true, "trace_file_path": "./flexkv_trace.log"}}'


def test_comment_in_snippet_is_stripped_and_ssd_turns_on(tmp_path):
    cc = resolved(tmp_path, MORE_CPU)
    assert (cc.num_cpu_blocks, cc.num_ssd_blocks) == (100000, 1000000)
    assert cc.enable_ssd is True
    assert cc.enable_remote is False and cc.num_remote_blocks == 0


def test_tokens_per_block_snippet(tmp_path):
    cc = resolved(tmp_path, '{"cache_config": {"tokens_per_block": 32}}')
    assert cc.tokens_per_block == 32
    # 32-token blocks are twice as large, so the default 16 GiB holds half as many.
    assert cc.num_cpu_blocks == DEFAULT_CPU_BLOCKS // 2


def test_evict_ratio_snippet(tmp_path):
    config = load(tmp_path, '{"cache_config": {"evict_ratio": 0.0}}')
    assert config.cache_config.evict_ratio == 0.0
    assert "cache_config.evict_ratio" in config.explicit


def test_copy_engine_snippet(tmp_path):
    cc = resolved(tmp_path, COPY_ENGINE)
    assert cc.use_ce_transfer_h2d is True and cc.use_ce_transfer_d2h is True
    assert (cc.transfer_sms_h2d, cc.transfer_sms_d2h) == (16, 16)


def test_iouring_snippet(tmp_path):
    cc = resolved(tmp_path, '{"cache_config": {"ssd_cache_iouring_entries": 1024}}')
    assert cc.ssd_cache_iouring_entries == 1024


def test_enable_ssd_snippet(tmp_path):
    cc = resolved(tmp_path, ENABLE_SSD)
    assert (cc.enable_ssd, cc.num_cpu_blocks, cc.num_ssd_blocks) == (True, 10000, 1000000)


def test_enable_remote_snippet(tmp_path):
    cc = resolved(tmp_path, ENABLE_REMOTE)
    assert (cc.enable_remote, cc.num_remote_blocks) == (True, 10_000_000)
    assert (cc.enable_ssd, cc.num_ssd_blocks) == (True, 100_000)
    assert cc.num_cpu_blocks == DEFAULT_CPU_BLOCKS


def test_trace_snippet(tmp_path):
    cc = resolved(tmp_path, TRACE)
    assert cc.enable_trace is True and cc.trace_file_path == "./flexkv_trace.log"


def test_yaml_flat_user_config(tmp_path):
    text = "cpu_cache_gb: 32\nssd_cache_gb: 1024\nssd_cache_dir: /data0/a/;/data1/b/\n"
    config = load(tmp_path, text, "flexkv.yaml")
    cc = config.resolve().cache_config
    assert cc.ssd_cache_dir == ("/data0/a/", "/data1/b/")
    assert cc.num_cpu_blocks == 32 * GIB // BLOCK_BYTES == 16384
    assert cc.num_ssd_blocks == 1024 * GIB // BLOCK_BYTES
    assert cc.enable_ssd is True
    assert "cache_config.cpu_cache_gb" in config.explicit


def test_flexkv_ssd_cache_gb_zero_means_ssd_off(tmp_path):
    cc = load(tmp_path, "ssd_cache_gb: 0\niouring_entries: 64\n", "c.yml").resolve().cache_config
    assert cc.enable_ssd is False and cc.num_ssd_blocks == 0
    assert cc.ssd_cache_iouring_entries == 64  # FlexKV's name is an alias


def test_unknown_extension_tries_json_then_yaml(tmp_path):
    assert load(tmp_path, '{"evict_ratio": 0.5} // c', "a.conf").cache_config.evict_ratio == 0.5
    assert load(tmp_path, "evict_ratio: 0.25\n", "b.conf").cache_config.evict_ratio == 0.25


# --- comments --------------------------------------------------------------------


def test_double_slash_inside_strings_survives(tmp_path):
    text = """
    /* remote tier
       on redis */
    {"cache_config": {
        "remote_backend": "redis",  // a comment with "quotes"
        "remote_url": "redis://host:6379/0", // the URL keeps its //
        "trace_file_path": "a/*b*/c.log",
        "ssd_cache_dir": ["/x//y", "C:\\\\dir\\"//"],
    }}
    """
    cc = load(tmp_path, text).cache_config
    assert cc.remote_url == "redis://host:6379/0"
    assert cc.trace_file_path == "a/*b*/c.log"
    assert cc.ssd_cache_dir == ("/x//y", 'C:\\dir"//')


# --- precedence --------------------------------------------------------------------


def test_file_over_environment_over_default(tmp_path):
    env = {"FLEXKV_EVICT_RATIO": "0.2", "FLEXKV_HIT_REWARD_SECONDS": "5"}
    config = load(tmp_path, '{"evict_ratio": 0.1}', env=env)
    assert config.cache_config.evict_ratio == 0.1  # file wins
    assert config.cache_config.hit_reward_seconds == 5.0  # environment over default
    assert config.cache_config.evict_start_threshold == 1.0  # default
    assert load_config(env={}).cache_config.hit_reward_seconds == 0.0


def test_environment_values_are_parsed_to_field_types():
    env = {
        "FLEXKV_USE_CE_TRANSFER_H2D": "1",
        "FLEXKV_USE_CE_TRANSFER_D2H": "false",
        "FLEXKV_TRANSFER_SMS_H2D": "4",
        "FLEXKV_IORING_ENTRIES": "256",
        "FLEXKV_SSD_CACHE_DIR": "/a;/b",
        "FLEXKV_TOKENS_PER_BLOCK": "64",
        "FLEXKV_EVICTION_POLICY": "SLRU",
        "FLEXKV_NUM_CPU_BLOCKS": "",  # empty counts as unset
    }
    config = load_config(env=env)
    cc = config.cache_config
    assert (cc.use_ce_transfer_h2d, cc.use_ce_transfer_d2h) == (True, False)
    assert (cc.transfer_sms_h2d, cc.ssd_cache_iouring_entries) == (4, 256)
    assert cc.ssd_cache_dir == ("/a", "/b")
    assert cc.eviction_policy == "slru"
    assert cc.num_cpu_blocks is None
    assert "cache_config.tokens_per_block" in config.explicit


def test_overrides_over_file(tmp_path):
    config = load(
        tmp_path,
        '{"cache_config": {"evict_ratio": 0.1, "tokens_per_block": 16}}',
        overrides=[
            "cache_config.evict_ratio=0.3",
            "tokens_per_block=64",
            "serving_config.compute.decode_step_s=0.02",
        ],
    )
    assert config.cache_config.evict_ratio == 0.3
    assert config.cache_config.tokens_per_block == 64
    assert config.serving_config.compute.decode_step_s == 0.02
    assert "serving_config.compute.decode_step_s" in config.explicit


def test_capacity_from_a_higher_layer_replaces_the_other_unit(tmp_path):
    env = {"FLEXKV_CPU_CACHE_GB": "64"}
    config = load(tmp_path, '{"num_cpu_blocks": 1000}', env=env)
    assert config.resolve().cache_config.num_cpu_blocks == 1000
    assert "cache_config.cpu_cache_gb" not in config.explicit
    config = load(tmp_path, '{"num_cpu_blocks": 1000}', overrides=["cpu_cache_gb=1"])
    assert config.cache_config.num_cpu_blocks is None
    assert config.resolve().cache_config.num_cpu_blocks == GIB // BLOCK_BYTES


def test_blocks_win_over_gb_within_one_source(tmp_path):
    cc = load(tmp_path, '{"num_ssd_blocks": 7, "ssd_cache_gb": 100}').resolve().cache_config
    assert cc.num_ssd_blocks == 7


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, '{"cache_config": {"evict_ratio": 0.4}}')
    config = load_config(env={"FLEXKV_CONFIG_PATH": str(path)})
    assert config.cache_config.evict_ratio == 0.4
    assert config.source == str(path)


def test_parse_overrides_reads_yaml_values():
    raw = parse_overrides(
        [
            "cache_config.num_cpu_blocks=1e6",
            "enable_ssd=true",
            "cache_config.remote_url=null",
            "ssd_cache_dir=[/a, /b]",
            "model_config.dtype=fp16",
            "evict_ratio=0.5",
            "evict_ratio=0.25",
        ]
    )
    assert raw["cache_config"] == {"num_cpu_blocks": 1e6, "remote_url": None}
    assert raw["enable_ssd"] is True and raw["ssd_cache_dir"] == ["/a", "/b"]
    assert raw["evict_ratio"] == 0.25  # the later item wins
    config = load_config(overrides=raw, env={})
    assert config.cache_config.num_cpu_blocks == 1_000_000
    assert config.model_config.dtype == "float16"


# --- resolution --------------------------------------------------------------------


def test_trace_block_size_applies_unless_explicit(tmp_path):
    open_config = load(tmp_path, '{"evict_ratio": 0.0}')
    assert "cache_config.tokens_per_block" not in open_config.explicit
    assert open_config.resolve(trace_tokens_per_block=32).cache_config.tokens_per_block == 32
    assert open_config.resolve().cache_config.tokens_per_block == 16
    fixed = load(tmp_path, '{"tokens_per_block": 16}')
    assert "cache_config.tokens_per_block" in fixed.explicit
    assert fixed.resolve(trace_tokens_per_block=64).cache_config.tokens_per_block == 16


def test_resolve_is_idempotent_and_complete():
    config = Config(cache_config=CacheConfig(ssd_cache_gb=8.0, enable_remote=False))
    resolved = config.resolve()
    assert not config.is_resolved and resolved.is_resolved
    assert resolved.resolve(trace_tokens_per_block=64) == resolved
    assert resolved.cache_config.num_ssd_blocks == 8 * GIB // BLOCK_BYTES


def test_disabled_tier_has_no_blocks():
    cc = (
        Config(cache_config=CacheConfig(enable_ssd=False, num_ssd_blocks=500))
        .resolve()
        .cache_config
    )
    assert cc.enable_ssd is False and cc.num_ssd_blocks == 0


@pytest.mark.parametrize(
    ("cache", "key_path"),
    [
        ({"enable_ssd": True}, "cache_config.num_ssd_blocks"),
        ({"enable_ssd": True, "ssd_cache_gb": 0}, "cache_config.num_ssd_blocks"),
        ({"enable_remote": True, "num_remote_blocks": 0}, "cache_config.num_remote_blocks"),
        ({"num_cpu_blocks": 0}, "cache_config.num_cpu_blocks"),
        ({"cpu_cache_gb": 0.0001}, "cache_config.num_cpu_blocks"),
    ],
)
def test_tier_without_blocks_is_an_error(tmp_path, cache, key_path):
    config = load(tmp_path, json.dumps({"cache_config": cache}))
    with pytest.raises(ConfigError, match=rf"config\.json: {key_path}: ") as info:
        config.resolve()
    assert info.value.key_path == key_path


# --- model and compute -------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name", "size"),
    [
        ("bf16", "bfloat16", 2),
        ("fp16", "float16", 2),
        ("half", "float16", 2),
        ("float", "float32", 4),
        ("fp32", "float32", 4),
        ("fp8", "float8_e4m3fn", 1),
        ("torch.bfloat16", "bfloat16", 2),
    ],
)
def test_dtype_aliases(alias, name, size):
    model = ModelConfig(dtype=alias)
    assert (model.dtype, model.dtype_size) == (name, size)


def test_bytes_per_token_and_block():
    model = ModelConfig(num_layers=61, num_kv_heads=1, head_size=576, dtype="bf16", use_mla=True)
    assert model.bytes_per_token == 61 * 1 * 576 * 2
    assert ModelConfig().bytes_per_block(16) == BLOCK_BYTES
    with pytest.raises(ValueError, match="at least 1"):
        ModelConfig().bytes_per_block(0)


def test_prefill_time():
    compute = ComputeModel(prefill_fixed_s=0.01, prefill_per_token_s=1e-4, prefill_quadratic_s=1e-8)
    assert compute.prefill_time(100, 900) == pytest.approx(0.01 + 0.01 + 1e-8 * 100 * 1000)
    assert compute.prefill_time(0, 500) == pytest.approx(0.01)


# --- output ------------------------------------------------------------------------


def test_config_hash_is_stable_and_tracks_values(tmp_path):
    a = load(tmp_path, '{"cache_config": {"evict_ratio": 0.1}}').resolve()
    b = load(tmp_path, "evict_ratio: 0.1\n", "c.yaml").resolve()
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16 and int(config_hash(a), 16) >= 0
    c = load(tmp_path, '{"cache_config": {"evict_ratio": 0.2}}').resolve()
    assert config_hash(c) != config_hash(a)


def test_config_to_dict_is_json_and_hides_the_password():
    config = Config(cache_config=CacheConfig(remote_password="s3cret")).resolve()
    data = config_to_dict(config)
    text = json.dumps(data)
    assert "s3cret" not in text and "s3cret" not in repr(config)
    assert data["cache_config"]["ssd_cache_dir"] == ["./flexkv_ssd"]
    assert config_to_dict(config, redact=False)["cache_config"]["remote_password"] == "s3cret"


def test_loading_creates_nothing(tmp_path):
    ssd_dir = tmp_path / "ssd"
    path = write(
        tmp_path,
        json.dumps(
            {
                "cache_config": {
                    "num_ssd_blocks": 10,
                    "ssd_cache_dir": f"{ssd_dir}/a;{ssd_dir}/b",
                    "enable_trace": True,
                    "trace_file_path": str(tmp_path / "t.log"),
                },
            }
        ),
    )
    before = sorted(tmp_path.rglob("*"))
    load_config(path, env={}).resolve()
    assert sorted(tmp_path.rglob("*")) == before == [path]


def test_config_error_pickles():
    error = ConfigError("bad", key_path="cache_config.x", source="f.json", hint="choose")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.key_path) == (str(error), "cache_config.x")


def test_import_is_light():
    code = (
        "import sys, flexkv_engine.config as c; c.load_config(env={}).resolve();"
        "print(sorted(m for m in ('torch', 'numpy', 'yaml', 'simpy') if m in sys.modules))"
    )
    engine = str(Path(__file__).resolve().parents[2] / "engine")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": engine},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_cache_sizes_accept_units() -> None:
    from flexkv_engine.config import ConfigError as Error
    from flexkv_engine.config import load_config as load

    config = load(None, overrides=["cache_config.cpu_cache_gb=64GiB",
                                   "cache_config.ssd_cache_gb=512GB"], env={})
    assert config.cache_config.cpu_cache_gb == 64.0
    assert config.cache_config.ssd_cache_gb == pytest.approx(512e9 / 2**30)
    env = load(None, env={"FLEXKV_CPU_CACHE_GB": "16"})
    assert env.cache_config.cpu_cache_gb == 16.0
    resolved = load(None, overrides=["cache_config.cpu_cache_gb=2GiB"], env={}).resolve(16)
    assert resolved.cache_config.num_cpu_blocks == 1024  # 2 MiB blocks of Llama-3-8B
    with pytest.raises(Error, match=r"cache_config\.cpu_cache_gb"):
        load(None, overrides=["cache_config.cpu_cache_gb=lots"], env={})
