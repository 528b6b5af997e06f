"""``flexkv_engine.config.overview`` and ``flexkv-run config``: tier sizes and inert keys."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flexkv_engine.cli import main
from flexkv_engine.config import GIB, CacheConfig, Config, load_config
from flexkv_engine.config.overview import inert_keys, is_set, tier_sizes

BLOCK_BYTES = 32 * 2 * 8 * 128 * 2 * 16  # the default Llama-3-8B layout, 16 tokens a block


def loaded(*overrides: str) -> Config:
    return load_config(overrides=list(overrides), env={}).resolve()


def inert(*overrides: str) -> list[str]:
    return [key.key_path for key in inert_keys(loaded(*overrides))]


def test_sizes_of_cpu_and_ssd_in_gib() -> None:
    sizes = tier_sizes(loaded("cache_config.num_cpu_blocks=1024", "cache_config.ssd_cache_gb=4"))
    assert [s.tier for s in sizes] == ["cpu", "ssd"]
    cpu, ssd = sizes
    assert (cpu.blocks, cpu.block_bytes, cpu.gib) == (1024, BLOCK_BYTES, 2.0)
    assert (ssd.blocks, ssd.bytes, ssd.gib) == (4 * GIB // BLOCK_BYTES, 4 * GIB, 4.0)
    assert cpu.key == "cache_config.num_cpu_blocks"
    assert ssd.key == "cache_config.ssd_cache_gb"
    assert "2.000 GiB" in cpu.describe() and "4.000 GiB" in ssd.describe()


def test_gpu_prefix_cache_is_listed_when_configured() -> None:
    assert [s.tier for s in tier_sizes(loaded())] == ["cpu"]
    sizes = tier_sizes(loaded("serving_config.num_gpu_blocks=512"))
    assert sizes[-1].tier == "gpu" and sizes[-1].gib == 1.0


def test_sizes_need_a_resolved_config() -> None:
    with pytest.raises(ValueError, match="resolve"):
        tier_sizes(load_config(env={}))


def test_a_plain_config_has_no_inert_keys() -> None:
    assert inert() == []
    assert (
        inert(
            "cache_config.num_ssd_blocks=100",
            "cache_config.ssd_cache_iouring_entries=64",
            "cache_config.transfer_sms_h2d=16",
            "cache_config.hit_reward_seconds=2",
        )
        == []
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # An SSD key while the SSD tier is off; the same key with SSD on warns of nothing.
        (["cache_config.ssd_cache_iouring_entries=64"], "cache_config.ssd_cache_iouring_entries"),
        (["cache_config.ssd_cache_dir=/tmp/a;/tmp/b"], "cache_config.ssd_cache_dir"),
        (
            ["cache_config.enable_ssd=false", "cache_config.num_ssd_blocks=100"],
            "cache_config.num_ssd_blocks",
        ),
        # Remote keys without a remote tier.
        (["cache_config.remote_url=/mnt/kv"], "cache_config.remote_url"),
        (["cache_config.remote_backend=redis"], "cache_config.remote_backend"),
        # The SM count of a direction that runs on the copy engines.
        (
            ["cache_config.use_ce_transfer_h2d=true", "cache_config.transfer_sms_h2d=16"],
            "cache_config.transfer_sms_h2d",
        ),
        (
            ["cache_config.use_ce_transfer_d2h=true", "cache_config.transfer_sms_d2h=4"],
            "cache_config.transfer_sms_d2h",
        ),
        # A policy parameter the chosen policy does not take.
        (
            ["cache_config.eviction_policy=lfu", "cache_config.hit_reward_seconds=1"],
            "cache_config.hit_reward_seconds",
        ),
        (["cache_config.slru_protected_threshold=3"], "cache_config.slru_protected_threshold"),
        (
            ["cache_config.num_cpu_blocks=100", "cache_config.cpu_cache_gb=1"],
            "cache_config.cpu_cache_gb",
        ),
        (
            ["cache_config.num_remote_blocks=10", "cache_config.remote_password=pw"],
            "cache_config.remote_password",
        ),
        (["cache_config.trace_file_path=/tmp/t.jsonl"], "cache_config.trace_file_path"),
    ],
)
def test_each_inert_key_is_named(overrides: list[str], expected: str) -> None:
    assert inert(*overrides) == [expected]


@pytest.mark.parametrize(
    "overrides",
    [
        ["cache_config.num_ssd_blocks=100", "cache_config.ssd_cache_iouring_entries=64"],
        ["cache_config.num_ssd_blocks=100", "cache_config.ssd_cache_dir=/tmp/a;/tmp/b"],
        ["cache_config.num_ssd_blocks=0"],  # a zero capacity is what turns the tier off
        ["cache_config.num_remote_blocks=10", "cache_config.remote_url=/mnt/kv"],
        ["cache_config.use_ce_transfer_h2d=true", "cache_config.transfer_sms_d2h=4"],
        ["cache_config.use_ce_transfer_d2h=true"],
        ["cache_config.eviction_policy=lru", "cache_config.hit_reward_seconds=1"],
        ["cache_config.eviction_policy=slru", "cache_config.slru_protected_threshold=3"],
        [
            "cache_config.num_remote_blocks=10",
            "cache_config.remote_backend=redis",
            "cache_config.remote_password=pw",
        ],
        ["cache_config.enable_trace=true", "cache_config.trace_file_path=/tmp/t.jsonl"],
    ],
)
def test_effective_keys_are_not_named(overrides: list[str]) -> None:
    assert inert(*overrides) == []


def test_set_counts_a_default_written_out_and_a_changed_value_in_code() -> None:
    # Written out, even at its default value: the operator asked for it.
    assert inert("cache_config.ssd_cache_iouring_entries=512") == [
        "cache_config.ssd_cache_iouring_entries"
    ]
    # Built in code: no source, so a value away from the default counts.
    config = Config(cache_config=CacheConfig(ssd_cache_iouring_entries=64)).resolve()
    assert is_set(config, "ssd_cache_iouring_entries")
    assert not is_set(config, "ssd_cache_dir")
    assert [k.key_path for k in inert_keys(config)] == ["cache_config.ssd_cache_iouring_entries"]


def test_environment_counts_as_set() -> None:
    config = load_config(env={"FLEXKV_SSD_CACHE_IOURING_ENTRIES": "64"}).resolve()
    assert [k.key_path for k in inert_keys(config)] == ["cache_config.ssd_cache_iouring_entries"]


def test_cli_keeps_json_on_stdout_and_tells_sizes_and_warnings(tmp_path) -> None:
    cfg = tmp_path / "flexkv.json"
    cfg.write_text(
        json.dumps(
            {
                "cache_config": {
                    "num_cpu_blocks": 1024,
                    "ssd_cache_gb": 4,
                    "use_ce_transfer_d2h": True,
                    "transfer_sms_d2h": 16,
                    "remote_url": "/mnt/kv",
                }
            }
        )
    )
    result = CliRunner().invoke(main, ["config", str(cfg)])
    assert result.exit_code == 0, result.output
    cache = json.loads(result.stdout)["cache_config"]
    assert cache["num_cpu_blocks"] == 1024 and cache["num_ssd_blocks"] == 2048
    err = result.stderr.splitlines()
    assert "GiB = 2^30 bytes" in err[0]
    assert any(line.split()[:2] == ["cpu", "1024"] and "2.000 GiB" in line for line in err)
    assert any(line.split()[:2] == ["ssd", "2048"] and "4.000 GiB" in line for line in err)
    assert not any(line.split()[:1] == ["remote"] for line in err)
    warnings = sorted(line for line in err if line.startswith("warning:"))
    assert len(warnings) == 2
    assert "cache_config.remote_url" in warnings[0] and "remote tier is off" in warnings[0]
    assert "cache_config.transfer_sms_d2h" in warnings[1] and "use_ce_transfer_d2h" in warnings[1]


def test_cli_without_inert_keys_warns_of_nothing() -> None:
    result = CliRunner().invoke(main, ["config", "--set", "cache_config.num_ssd_blocks=10"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "warning:" not in result.stderr
