"""The RemoteStore contract, one test body for every backend (fs, and redis on a real
redis-server on loopback): round trips, batches, delete, size, oldest-first eviction,
prefix isolation, integrity, outages, and two processes sharing one store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flexkv_engine.config import REMOTE_BACKENDS, CacheConfig
from flexkv_engine.storage.remote import (
    REMOTE_STORES,
    RemoteStoreError,
    RemoteUnavailable,
    key_name,
    object_size,
    open_remote_store,
)
from flexkv_engine.storage.remote.fs import FsRemoteStore

from .conftest import STRIDE, StoreFactory, poisoned, random_blocks, random_keys

OBJ = object_size(STRIDE)


def views(buffers: list[bytes] | list[bytearray]) -> list[memoryview]:
    return [memoryview(b) for b in buffers]


def held(store, keys: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """Indices of ``keys`` whose objects exist."""
    return [i for i, there in enumerate(store.exists(keys)) if there]


def test_round_trip_is_byte_exact(stores: StoreFactory) -> None:
    store = stores()
    keys, blocks = random_keys(12), random_blocks(12)
    assert store.exists(keys) == [False] * 12
    store.put(keys, views(blocks))
    out = poisoned(12)
    assert store.get(keys, views(out)) == [True] * 12
    assert [bytes(b) for b in out] == blocks
    # Any order, any subset, and a missing key in the middle.
    missing = random_keys(1, seed=99)[0]
    order = [keys[5], missing, keys[0], keys[11]]
    out = poisoned(4)
    assert store.get(order, views(out)) == [True, False, True, True]
    assert [bytes(out[i]) for i in (0, 2, 3)] == [blocks[5], blocks[0], blocks[11]]
    assert store.corrupt == 0
    # Views of other element types are blocks of bytes all the same.
    wide = memoryview(bytearray(STRIDE)).cast("I")
    assert store.get([keys[3]], [wide]) == [True]
    assert wide.tobytes() == blocks[3]


def test_exists_is_per_key_and_empty_batches_are_fine(stores: StoreFactory) -> None:
    store = stores()
    keys, blocks = random_keys(6), random_blocks(6)
    store.put(keys[::2], views(blocks[::2]))
    assert store.exists(keys) == [True, False] * 3
    assert store.exists([]) == [] and store.get([], []) == [] and store.delete([]) == 0
    store.put([], [])
    assert store.exists([0, 2**128 - 1]) == [False, False]


def test_delete_and_size(stores: StoreFactory) -> None:
    store = stores()
    keys, blocks = random_keys(5), random_blocks(5)
    assert store.size() == (0, 0)
    store.put(keys, views(blocks))
    assert store.size() == (5, 5 * OBJ)
    store.put(keys[:2], views(random_blocks(2, seed=1)))  # rewrites: same count
    assert store.size() == (5, 5 * OBJ)
    assert store.delete([keys[0], keys[3], random_keys(1, seed=7)[0], keys[0]]) == 2
    assert store.size() == (3, 3 * OBJ)
    assert held(store, keys) == [1, 2, 4]
    assert store.get([keys[0]], views(poisoned(1))) == [False]


def test_bad_arguments_are_refused(stores: StoreFactory) -> None:
    store = stores()
    with pytest.raises(ValueError, match="views"):
        store.put(random_keys(2), views(random_blocks(1)))
    with pytest.raises(ValueError, match="bytes"):
        store.put(random_keys(1), [memoryview(bytearray(STRIDE - 1))])
    with pytest.raises(ValueError, match="128-bit"):
        store.exists([-1])
    with pytest.raises(ValueError, match="128-bit"):
        store.exists([2**128])
    assert key_name(255) == "0" * 30 + "ff"


def test_oldest_write_is_evicted_first(stores: StoreFactory) -> None:
    store = stores(capacity=4 * OBJ)
    keys, blocks = random_keys(8), random_blocks(8)
    store.put(keys[:4], views(blocks[:4]))
    assert held(store, keys) == [0, 1, 2, 3]
    store.put([keys[0]], views(blocks[:1]))  # a rewrite makes k0 the newest
    store.put([keys[4]], views(blocks[4:5]))
    assert held(store, keys) == [0, 2, 3, 4]
    store.put(keys[5:7], views(blocks[5:7]))
    assert held(store, keys) == [0, 4, 5, 6]
    assert store.size() == (4, 4 * OBJ)
    # A batch larger than the capacity keeps its last blocks, in write order.
    store.put(keys[:7], views(blocks[:7]))
    assert held(store, keys) == [3, 4, 5, 6]
    assert store.size() == (4, 4 * OBJ)
    out = poisoned(4)
    assert store.get(keys[3:7], views(out)) == [True] * 4
    assert [bytes(b) for b in out] == blocks[3:7]


def test_capacity_holds_over_every_instance(stores: StoreFactory) -> None:
    first, second = stores(capacity=6 * OBJ), stores(capacity=6 * OBJ)
    keys, blocks = random_keys(10), random_blocks(10)
    for i in range(10):
        (first if i % 2 else second).put([keys[i]], views(blocks[i : i + 1]))
    assert first.size() == second.size() == (6, 6 * OBJ)
    assert held(first, keys) == [4, 5, 6, 7, 8, 9]


def test_prefixes_do_not_see_each_other(stores: StoreFactory) -> None:
    a, b = stores(prefix="tenant-a:"), stores(prefix="tenant-b:")
    keys, blocks = random_keys(3), random_blocks(3)
    a.put(keys, views(blocks))
    assert b.exists(keys) == [False] * 3 and b.size() == (0, 0)
    b.put(keys[:1], views(random_blocks(1, seed=5)))
    assert b.delete(keys) == 1
    out = poisoned(3)
    assert a.get(keys, views(out)) == [True] * 3 and [bytes(x) for x in out] == blocks
    assert a.size() == (3, 3 * OBJ)


def _damage(stores: StoreFactory, key: int, how: str, donor: int | None = None) -> None:
    """Damage ``key``'s stored object behind the store's back."""
    name = key_name(key)
    if stores.backend == "fs":
        path = stores.root / "flexkv" / name[:2] / name
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[-100] ^= 0x01
        elif how == "truncate":
            del data[-1]
        elif how == "header":
            data[30] ^= 0x40  # payload length: the header checksum fails
        elif how == "other_key":
            other = key_name(donor or 0)
            data = bytearray((stores.root / "flexkv" / other[:2] / other).read_bytes())
        path.write_bytes(data)
        return
    import redis

    assert stores.server is not None
    client = redis.Redis.from_url(stores.server.url)
    value = bytearray(client.get(f"flexkv:{name}") or b"")
    if how == "flip":
        value[-100] ^= 0x01
    elif how == "truncate":
        del value[-1]
    elif how == "header":
        value[30] ^= 0x40
    elif how == "other_key":
        value = bytearray(client.get(f"flexkv:{key_name(donor or 0)}") or b"")
    client.set(f"flexkv:{name}", bytes(value))
    client.close()


@pytest.mark.parametrize("how", ["flip", "truncate", "header", "other_key"])
def test_a_damaged_object_is_a_failed_load(stores: StoreFactory, how: str) -> None:
    store = stores()
    keys, blocks = random_keys(3), random_blocks(3)
    store.put(keys, views(blocks))
    _damage(stores, keys[1], how, donor=keys[2])
    out = poisoned(3)
    assert store.get(keys, views(out)) == [True, False, True]
    assert bytes(out[0]) == blocks[0] and bytes(out[2]) == blocks[2]
    assert store.corrupt == 1
    assert store.exists(keys) == [True, True, True]  # there, but never served
    store.put(keys[1:2], views(blocks[1:2]))  # a rewrite heals it
    assert store.get(keys[1:2], views(out[1:2])) == [True] and bytes(out[1]) == blocks[1]


def test_an_object_of_another_block_size_is_refused(stores: StoreFactory) -> None:
    big = stores(stride=2 * STRIDE)
    keys = random_keys(1)
    big.put(keys, views(random_blocks(1, stride=2 * STRIDE)))
    small = stores()
    assert small.get(keys, views(poisoned(1))) == [False] and small.corrupt == 1


def test_an_unreachable_store_raises_and_recovers(stores: StoreFactory) -> None:
    store = stores()
    keys, blocks = random_keys(4), random_blocks(4)
    store.put(keys[:2], views(blocks[:2]))
    stores.outage()
    for call in (
        lambda: store.exists(keys),
        lambda: store.get(keys, views(poisoned(4))),
        lambda: store.put(keys[2:], views(blocks[2:])),
        lambda: store.delete(keys[:1]),
        store.size,
    ):
        with pytest.raises(RemoteUnavailable):
            call()
    stores.restore()
    store.put(keys[2:], views(blocks[2:]))
    expected = [True] * 4 if stores.backend == "fs" else [False, False, True, True]
    assert store.exists(keys) == expected  # a restarted redis without persistence is empty


# One engine process: put 15 batches of 3 blocks of its seed into a shared store.
_WRITER = """
import random, sys
from flexkv_engine.storage.remote.base import object_size
backend, where, seed, stride = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cap = 20 * object_size(stride)
if backend == "fs":
    from flexkv_engine.storage.remote.fs import FsRemoteStore
    store = FsRemoteStore(where, stride, capacity_bytes=cap)
else:
    from flexkv_engine.storage.remote.redis_store import RedisRemoteStore
    store = RedisRemoteStore(where, stride, capacity_bytes=cap)
rng, krng = random.Random(seed), random.Random(seed + 1000)
blocks = [rng.randbytes(stride) for _ in range(45)]
keys = [krng.getrandbits(128) for _ in range(45)]
for r in range(15):
    store.put(keys[3 * r : 3 * r + 3], [memoryview(b) for b in blocks[3 * r : 3 * r + 3]])
store.close()
"""


def test_two_processes_share_the_store_and_its_capacity(stores: StoreFactory) -> None:
    store = stores(capacity=20 * OBJ)
    where = str(stores.root) if stores.server is None else stores.server.url
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, stores.backend, where, str(seed), str(STRIDE)]
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        assert proc.wait(120) == 0
    assert store.size() == (20, 20 * OBJ)
    if isinstance(store, FsRemoteStore):
        assert store.recount() == (20, 20 * OBJ)  # the shared counts match the disk
    # 20 of the 90 blocks remain, byte for byte, the last batch written among them.
    keys = random_keys(45, seed=1) + random_keys(45, seed=2)
    blocks = random_blocks(45, seed=1) + random_blocks(45, seed=2)
    out = poisoned(90)
    found = store.get(keys, views(out))
    assert sum(found) == 20
    assert all(bytes(out[i]) == blocks[i] for i in range(90) if found[i])
    assert all(found[42:45]) or all(found[87:90])


def test_registry_matches_the_config_schema() -> None:
    assert sorted(REMOTE_STORES) == sorted(REMOTE_BACKENDS) == ["fs", "redis"]


def test_open_remote_store_from_a_config(tmp_path: Path) -> None:
    cache = CacheConfig(
        remote_backend="fs",
        remote_url=f"file://{tmp_path}/shared",
        remote_key_prefix="run7:",
        remote_store_capacity_gb=0.5,
    )
    store = open_remote_store(cache, STRIDE)
    assert isinstance(store, FsRemoteStore)
    assert store.directory == tmp_path / "shared" / "run7"
    assert store.capacity_bytes == 2**29
    store.close()
    with pytest.raises(RemoteStoreError, match="directory"):
        open_remote_store(CacheConfig(remote_url="redis://localhost:6379/0"), STRIDE)
    with pytest.raises(RemoteStoreError, match="not a directory"):
        open_remote_store(CacheConfig(remote_url=str(tmp_path / "no" / "such")), STRIDE)
    with pytest.raises(RemoteStoreError, match="remote_key_prefix"):
        open_remote_store(CacheConfig(remote_url=str(tmp_path), remote_key_prefix="a/b"), STRIDE)


def test_open_redis_store_from_a_config() -> None:
    pytest.importorskip("redis", reason="the redis package is not installed")
    from flexkv_engine.storage.remote.redis_store import RedisRemoteStore

    cache = CacheConfig(
        remote_backend="redis",
        remote_url="redis://127.0.0.1:1/3",
        remote_password="secret",
        remote_store_capacity_gb=1,
    )
    store = open_remote_store(cache, STRIDE)  # nothing connects yet
    assert isinstance(store, RedisRemoteStore) and store.capacity_bytes == 2**30
    with pytest.raises(RemoteUnavailable, match="redis"):
        store.exists([1])
    store.close()
    with pytest.raises(RemoteStoreError, match="remote_url"):
        open_remote_store(CacheConfig(remote_backend="redis", remote_url="http://x"), STRIDE)
