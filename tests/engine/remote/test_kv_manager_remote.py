"""The KV manager with a remote tier: loads from the store, sharing, outages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from flexkv_engine.config import load_config  # noqa: E402
from flexkv_engine.hw_replay.pattern import fill_slot, slot_matches  # noqa: E402
from flexkv_engine.kv_manager import KVManager  # noqa: E402

TINY = [
    "model_config.num_layers=2", "model_config.num_kv_heads=2", "model_config.head_size=16",
    "model_config.dtype=float16", "cache_config.tokens_per_block=4",
]
KEYS = [0x1111_0000 + i for i in range(6)]
OTHER = [0x2222_0000 + i for i in range(8)]


@pytest.fixture(params=["fs", pytest.param("redis", marks=pytest.mark.redis)])
def remote(request: pytest.FixtureRequest, tmp_path: Path):
    """Config overrides that put the remote tier on a fresh store of each backend, and
    the means to take the store away and bring it back."""
    if request.param == "fs":
        root = tmp_path / "store"
        sets = ["cache_config.remote_backend=fs", f"cache_config.remote_url={root}"]
        away = root.with_name("unmounted")
        return sets, lambda: root.rename(away), lambda: away.rename(root)
    server = request.getfixturevalue("redis_server")
    sets = ["cache_config.remote_backend=redis", f"cache_config.remote_url={server.url}"]
    return sets, server.stop, server.start


def manager(sets, tmp_path: Path, *, cpu: int = 8, ssd: bool = False) -> KVManager:
    extra = ["cache_config.num_ssd_blocks=32", f"cache_config.ssd_cache_dir={tmp_path / 'ssd'}"]
    cfg = load_config(None, overrides=[
        *TINY, f"cache_config.num_cpu_blocks={cpu}", "cache_config.num_remote_blocks=64",
        *sets, *(extra if ssd else []),
    ], env={}).resolve()
    return KVManager(cfg, num_gpu_blocks=32)


def put(kv: KVManager, keys: list[int], first_slot: int = 0, status: str = "done") -> None:
    slots = list(range(first_slot, first_slot + len(keys)))
    for slot, key in zip(slots, keys, strict=True):
        fill_slot(kv.gpu.kv, kv.layout, slot, key)
    rid = kv.put_async(keys, slots)
    assert kv.wait([rid], timeout=30)[rid].status == status


def get(kv: KVManager, keys: list[int], first_slot: int = 16):
    kv.gpu.kv.fill_(float("nan"))  # poisoned: an unwritten byte fails the check
    slots = list(range(first_slot, first_slot + len(keys)))
    rid = kv.get_async(keys, slots)
    result = kv.wait([rid], timeout=30)[rid]
    for i in range(result.loaded_blocks):
        assert slot_matches(kv.gpu.kv, kv.layout, slots[i], keys[i]), f"block {i}"
    for i in range(result.loaded_blocks, len(keys)):
        assert torch.isnan(kv.gpu.block(slots[i])).all(), f"block {i} written though missed"
    return result


def test_a_fresh_instance_loads_from_the_store_byte_exact(remote, tmp_path) -> None:
    sets, _, _ = remote
    with manager(sets, tmp_path, ssd=True) as kv:
        put(kv, KEYS)
    # A new instance: CPU and SSD empty, remote index empty; the store has the blocks.
    with manager(sets, tmp_path / "second", ssd=True) as kv:
        result = get(kv, KEYS)
        assert result.loaded_blocks == len(KEYS)
        assert result.hit_blocks["remote"] == len(KEYS)
        stats = kv.stats()
        assert stats["adopted_blocks"] == len(KEYS)
        assert stats["tiers"]["remote"]["used"] == len(KEYS)
        again = get(kv, KEYS)  # now from the CPU tier, staged by the first GET
        assert again.hit_blocks["cpu"] == len(KEYS)


SCRIPT = textwrap.dedent("""
    import json, sys
    from flexkv_engine.config import load_config
    from flexkv_engine.hw_replay.pattern import fill_slot, slot_matches
    from flexkv_engine.kv_manager import KVManager
    role, sets, keys = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    cfg = load_config(None, overrides=sets, env={}).resolve()
    with KVManager(cfg, num_gpu_blocks=32) as kv:
        slots = list(range(len(keys)))
        if role == "writer":
            for s, k in zip(slots, keys):
                fill_slot(kv.gpu.kv, kv.layout, s, k)
            rid = kv.put_async(keys, slots)
            out = kv.wait([rid], timeout=30)[rid]
            print(json.dumps({"status": out.status}))
        else:
            kv.gpu.kv.fill_(float("nan"))
            rid = kv.get_async(keys, slots)
            out = kv.wait([rid], timeout=30)[rid]
            exact = all(slot_matches(kv.gpu.kv, kv.layout, s, k)
                        for s, k in zip(slots[: out.loaded_blocks], keys))
            print(json.dumps({"status": out.status, "loaded": out.loaded_blocks,
                              "remote": out.hit_blocks["remote"], "exact": exact}))
""")


def test_two_engine_processes_share_the_store(remote, tmp_path) -> None:
    sets, _, _ = remote
    config = [*TINY, "cache_config.num_cpu_blocks=8", "cache_config.num_remote_blocks=64", *sets]

    def run(role: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, role, json.dumps(config), json.dumps(KEYS)],
            capture_output=True, text=True, timeout=120, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run("writer") == {"status": "done"}
    assert run("reader") == {"status": "done", "loaded": len(KEYS), "remote": len(KEYS),
                             "exact": True}


@pytest.mark.faults
def test_outage_falls_back_to_a_miss_and_recovers(remote, tmp_path) -> None:
    sets, take_away, bring_back = remote
    with manager(sets, tmp_path, cpu=8) as kv:
        put(kv, KEYS)
        put(kv, OTHER)  # the CPU tier (8 blocks) now holds OTHER only
        take_away()
        try:
            assert get(kv, OTHER).loaded_blocks == len(OTHER)  # CPU still serves
            lost = get(kv, KEYS)  # the remote reads fail: a miss, nothing wrong
            assert lost.loaded_blocks == 0 and lost.hit_blocks["remote"] == 0
            during = [0x3333_0000 + i for i in range(4)]
            put(kv, during, status="failed")  # its remote write is dropped...
            assert get(kv, during).hit_blocks["cpu"] == len(during)  # ...the CPU has it
            errors = kv.stats()["remote_errors"]
            assert errors["gets_failed"] >= 1 and errors["puts_dropped"] >= 1
        finally:
            bring_back()
        fresh = [0x4444_0000 + i for i in range(6)]
        put(kv, fresh)
        put(kv, OTHER)  # push ``fresh`` out of the CPU tier
        back = get(kv, fresh)
        assert back.loaded_blocks == len(fresh) and back.hit_blocks["remote"] == len(fresh)
