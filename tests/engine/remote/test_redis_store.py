"""The redis remote store beyond the common contract, on a real redis-server: passwords,
its keys, pipelined batches, and keys removed behind its back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flexkv_engine.storage.remote import RemoteUnavailable, key_name, object_size
from flexkv_engine.storage.remote.redis_server import LocalRedisServer

from .conftest import STRIDE, poisoned, random_blocks, random_keys

pytestmark = pytest.mark.redis
OBJ = object_size(STRIDE)


def views(buffers: list[bytes] | list[bytearray]) -> list[memoryview]:
    return [memoryview(b) for b in buffers]


def open_store(server: LocalRedisServer, **options: object):  # type: ignore[no-untyped-def]
    from flexkv_engine.storage.remote.redis_store import RedisRemoteStore

    return RedisRemoteStore(server.url, STRIDE, connect_timeout=2.0, **options)  # type: ignore[arg-type]


def test_password(redis_server_factory: Callable[..., LocalRedisServer]) -> None:
    server = redis_server_factory(password="s3cret pass")
    keys, blocks = random_keys(2), random_blocks(2)
    good = open_store(server, password="s3cret pass")
    good.put(keys, views(blocks))
    good.ping()
    for password in (None, "wrong"):
        bad = open_store(server, password=password)
        with pytest.raises(RemoteUnavailable, match="uthentication"):
            bad.exists(keys)
        bad.close()
    out = poisoned(2)
    assert good.get(keys, views(out)) == [True, True] and [bytes(b) for b in out] == blocks
    good.close()


def test_keys_live_under_the_prefix(redis_server: LocalRedisServer) -> None:
    import redis

    store = open_store(redis_server, key_prefix="pfx:")
    keys = random_keys(3)
    store.put(keys, views(random_blocks(3)))
    client = redis.Redis.from_url(redis_server.url)
    names = sorted(k.decode() for k in client.keys("*"))
    expected = sorted(
        [f"pfx:{key_name(k)}" for k in keys] + ["pfx:index", "pfx:sizes", "pfx:stats"]
    )
    assert names == expected
    assert client.zrange("pfx:index", 0, -1) == [key_name(k).encode() for k in keys]
    assert client.hgetall("pfx:stats") == {
        b"objects": b"3",
        b"bytes": str(3 * OBJ).encode(),
        b"seq": b"3",
    }
    client.close()
    store.close()


def test_batches_split_into_several_pipelines(redis_server: LocalRedisServer) -> None:
    store = open_store(redis_server, max_batch_bytes=3 * OBJ, capacity_bytes=10 * OBJ)
    keys, blocks = random_keys(11), random_blocks(11)
    store.put(keys, views(blocks))
    assert store.size() == (10, 10 * OBJ) and store.evicted == 1
    out = poisoned(11)
    assert store.get(keys, views(out)) == [False] + [True] * 10
    assert [bytes(b) for b in out[1:]] == blocks[1:]


def test_keys_removed_behind_its_back_keep_the_counts_right(redis_server: LocalRedisServer) -> None:
    import redis

    store = open_store(redis_server, capacity_bytes=3 * OBJ)
    keys, blocks = random_keys(5), random_blocks(5)
    store.put(keys[:3], views(blocks[:3]))
    client = redis.Redis.from_url(redis_server.url)
    client.delete(f"flexkv:{key_name(keys[0])}")  # e.g. a maxmemory policy
    client.close()
    assert store.exists(keys[:3]) == [False, True, True]
    assert store.size() == (3, 3 * OBJ)  # not known yet
    store.put(keys[3:5], views(blocks[3:5]))  # evicts the stale entry, then k1
    assert store.exists(keys) == [False, False, True, True, True]
    assert store.size() == (3, 3 * OBJ)


def test_a_restarted_server_is_reached_again(redis_server: LocalRedisServer) -> None:
    store = open_store(redis_server)
    keys = random_keys(1)
    store.put(keys, views(random_blocks(1)))
    redis_server.restart()  # pooled connections are now dead: one retry reconnects
    assert store.exists(keys) == [False]
    assert store.size() == (0, 0)
