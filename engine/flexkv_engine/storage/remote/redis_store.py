"""The ``redis`` remote store: blocks as string values on a Redis or Valkey server.

Keys, all under ``remote_key_prefix`` (default ``flexkv:``), so stores of different
prefixes share one server and never see each other::

    <prefix><32 hex>   one object per block (base.py: header, then the block)
    <prefix>index      sorted set: name -> write sequence number (oldest first)
    <prefix>sizes      hash: name -> object bytes
    <prefix>stats      hash: objects, bytes, seq (the last sequence number given out)

Calls are pipelined: ``exists`` is one round trip, ``get`` and ``put`` one per
:data:`MAX_BATCH_BYTES` of blocks. A put is one MULTI/EXEC transaction: the SETs, then a
Lua script that counts the new objects (a rewrite gets a new sequence number, so it
becomes newest) and, while the store holds more than its capacity, deletes the object of
lowest sequence number (the batch's own blocks last, in order, should the batch alone
exceed the capacity). Transactions and scripts run atomically on the server, so the
counts, ``size()`` and the capacity hold exactly however many instances write at once.
Other things that remove keys (a ``maxmemory`` policy, a FLUSHDB, another tool) leave
index entries behind: eviction then drops them and subtracts the bytes recorded for
them, so the counts stay right (``size()`` counts them until then).

Connection errors (refused, reset, timed out, authentication) raise
:class:`RemoteUnavailable`; a call after the server is back reconnects. The scripts
touch keys they compute from the index, which a Redis Cluster does not allow: use one
server (or a proxy that keeps a prefix on one shard).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .base import (
    HEADER_SIZE,
    RemoteStoreError,
    RemoteUnavailable,
    check_object,
    check_views,
    encode_header,
    gib_to_bytes,
    key_name,
    object_size,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MAX_BATCH_BYTES = 64 * 2**20
"""Bytes of blocks per pipeline (bounds client and server memory of one call)."""

# KEYS: index, sizes, stats. ARGV: capacity in bytes (-1: none), key prefix, then
# name, size pairs. Returns how many objects it evicted.
_PUT_LUA = """
local cap = tonumber(ARGV[1])
local objects, nbytes = 0, 0
for i = 3, #ARGV, 2 do
  local name, size = ARGV[i], tonumber(ARGV[i + 1])
  local old = redis.call('HGET', KEYS[2], name)
  if old then
    nbytes = nbytes + size - tonumber(old)
  else
    objects, nbytes = objects + 1, nbytes + size
  end
  redis.call('HSET', KEYS[2], name, size)
  redis.call('ZADD', KEYS[1], redis.call('HINCRBY', KEYS[3], 'seq', 1), name)
end
redis.call('HINCRBY', KEYS[3], 'objects', objects)
local total = redis.call('HINCRBY', KEYS[3], 'bytes', nbytes)
local evicted = 0
while cap >= 0 and total > cap do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #oldest == 0 then break end
  local name = oldest[1]
  local size = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  redis.call('ZREM', KEYS[1], name)
  redis.call('HDEL', KEYS[2], name)
  redis.call('DEL', ARGV[2] .. name)
  redis.call('HINCRBY', KEYS[3], 'objects', -1)
  total = redis.call('HINCRBY', KEYS[3], 'bytes', -size)
  evicted = evicted + 1
end
return evicted
"""

# KEYS: index, sizes, stats. ARGV: key prefix, then names. Returns how many existed.
_DELETE_LUA = """
local removed = 0
for i = 2, #ARGV do
  local name = ARGV[i]
  local size = redis.call('HGET', KEYS[2], name)
  local existed = redis.call('DEL', ARGV[1] .. name)
  if size then
    redis.call('ZREM', KEYS[1], name)
    redis.call('HDEL', KEYS[2], name)
    redis.call('HINCRBY', KEYS[3], 'objects', -1)
    redis.call('HINCRBY', KEYS[3], 'bytes', -tonumber(size))
  end
  removed = removed + existed
end
return removed
"""


def _unavailable(exc: Exception) -> RemoteUnavailable:
    return RemoteUnavailable(f"redis remote store: {type(exc).__name__}: {exc}")


_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)  # AuthenticationError included


def _zero_copy_packer() -> Any:
    """redis-py's own command packer, which passes a large value to ``sendall`` as it
    is. With hiredis installed redis-py uses hiredis's packer instead, which builds one
    buffer of the whole command while holding the GIL: about 10 ms for a 2 MiB value on
    our 2-vCPU machine, three times the round trip itself. (Replies are still parsed by
    hiredis.) None when this redis-py lacks it: then its default packer."""
    try:
        from redis.connection import Encoder, PythonRespSerializer

        return PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    except (ImportError, TypeError):
        return None


class RedisRemoteStore:
    """Blocks on a Redis/Valkey server; see the module docstring. Thread-safe (a
    connection pool; each call takes its own connection)."""

    name = "redis"

    def __init__(
        self,
        url: str | None,
        stride: int,
        *,
        key_prefix: str = "flexkv:",
        password: str | None = None,
        capacity_bytes: int | None = None,
        socket_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.url = url or DEFAULT_URL
        self.stride = stride
        self.prefix = key_prefix
        self.capacity_bytes = capacity_bytes
        self.corrupt = 0
        self.evicted = 0
        self._counts = threading.Lock()
        self._per_batch = max(1, max_batch_bytes // object_size(stride))
        self._meta = [f"{key_prefix}{part}" for part in ("index", "sizes", "stats")]
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            # One quick retry on a fresh connection (a pooled one may predate a server
            # restart); no backoff, so an outage is reported at once.
            "retry": Retry(NoBackoff(), 1),
            # Replies are whole blocks: read them in 1 MiB gulps, not 64 KiB (about 20%
            # less time per 2 MiB get here).
            "socket_read_size": 1 << 20,
        }
        if password is not None:
            options["password"] = password
        packer = _zero_copy_packer()
        if packer is not None:
            options["command_packer"] = packer
        # from_url checks the URL's form; nothing connects until the first call.
        self._client = redis.Redis.from_url(self.url, **options)
        self._put_script = self._client.register_script(_PUT_LUA)
        self._delete_script = self._client.register_script(_DELETE_LUA)

    def __repr__(self) -> str:
        return f"RedisRemoteStore({self.url!r}, prefix={self.prefix!r}, stride={self.stride})"

    # -- the RemoteStore protocol ---------------------------------------------------------

    def exists(self, keys: Sequence[int]) -> list[bool]:
        names = [self.prefix + key_name(k) for k in keys]
        if not names:
            return []
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.exists(name)
                return [bool(n) for n in pipe.execute()]
        except _DOWN as exc:
            raise _unavailable(exc) from None

    def get(self, keys: Sequence[int], views: Sequence[memoryview]) -> list[bool]:
        check_views(self.stride, keys, views)
        names = [key_name(k) for k in keys]
        out: list[bool] = []
        try:
            for part in self._batches(len(keys)):
                with self._client.pipeline(transaction=False) as pipe:
                    for i in part:
                        pipe.get(self.prefix + names[i])
                    values = pipe.execute()
                for i, value in zip(part, values, strict=True):
                    out.append(self._load(keys[i], names[i], value, views[i]))
        except _DOWN as exc:
            raise _unavailable(exc) from None
        return out

    def put(self, keys: Sequence[int], views: Sequence[memoryview]) -> None:
        check_views(self.stride, keys, views)
        names = [key_name(k) for k in keys]
        cap = -1 if self.capacity_bytes is None else self.capacity_bytes
        try:
            for part in self._batches(len(keys)):
                values = []
                for i in part:
                    payload = memoryview(views[i]).cast("B")
                    values.append(b"".join((encode_header(keys[i], payload), payload)))
                args: list[Any] = [cap, self.prefix]
                for i, value in zip(part, values, strict=True):
                    args += [names[i], len(value)]
                with self._client.pipeline(transaction=True) as pipe:
                    for i, value in zip(part, values, strict=True):
                        pipe.set(self.prefix + names[i], value)
                    self._put_script(keys=self._meta, args=args, client=pipe)
                    evicted = int(pipe.execute()[-1])
                with self._counts:
                    self.evicted += evicted
        except _DOWN as exc:
            raise _unavailable(exc) from None

    def delete(self, keys: Sequence[int]) -> int:
        names = [key_name(k) for k in keys]
        if not names:
            return 0
        try:
            return int(self._delete_script(keys=self._meta, args=[self.prefix, *names]))
        except _DOWN as exc:
            raise _unavailable(exc) from None

    def size(self) -> tuple[int, int]:
        try:
            objects, nbytes = self._client.hmget(self._meta[2], ["objects", "bytes"])
        except _DOWN as exc:
            raise _unavailable(exc) from None
        return max(int(objects or 0), 0), max(int(nbytes or 0), 0)

    def close(self) -> None:
        self._client.close()

    def clear(self) -> int:
        """Delete every key under this store's prefix (objects and bookkeeping), for
        every instance; returns how many keys went."""
        pattern = "".join(f"\\{c}" if c in "*?[]\\^" else c for c in self.prefix) + "*"
        removed = 0
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) == 1000:
                    removed += int(self._client.delete(*batch))
                    batch = []
            if batch:
                removed += int(self._client.delete(*batch))
        except _DOWN as exc:
            raise _unavailable(exc) from None
        return removed

    def server_version(self) -> str:
        """The server's ``redis_version`` (Valkey reports a Redis-compatible one)."""
        try:
            return str(self._client.info("server").get("redis_version", "unknown"))
        except _DOWN as exc:
            raise _unavailable(exc) from None

    def ping(self) -> None:
        """Raise RemoteUnavailable unless the server answers (and accepts the password)."""
        try:
            self._client.ping()
        except _DOWN as exc:
            raise _unavailable(exc) from None

    # -- helpers ---------------------------------------------------------------------------

    def _batches(self, n: int) -> Iterator[range]:
        for start in range(0, n, self._per_batch):
            yield range(start, min(n, start + self._per_batch))

    def _load(self, key: int, name: str, value: bytes | None, view: memoryview) -> bool:
        if value is None:
            return False
        data = memoryview(value)
        reason: str | None
        if len(data) != object_size(self.stride):
            reason = f"{len(data)} bytes stored, expected {object_size(self.stride)}"
        else:
            reason = check_object(key, data[:HEADER_SIZE], data[HEADER_SIZE:])
        if reason is not None:
            with self._counts:
                self.corrupt += 1
            log.warning("redis remote store: refused %s%s: %s", self.prefix, name, reason)
            return False
        memoryview(view).cast("B")[:] = data[HEADER_SIZE:]
        return True


def open_store(cache: Any, stride: int) -> RedisRemoteStore:
    """The store that ``cache_config`` (remote_backend ``redis``) names: ``remote_url``
    ``redis://host:port/db`` and ``remote_password``."""
    try:
        return RedisRemoteStore(
            cache.remote_url,
            stride,
            key_prefix=cache.remote_key_prefix,
            password=cache.remote_password,
            capacity_bytes=gib_to_bytes(cache.remote_store_capacity_gb),
        )
    except ValueError as exc:  # redis-py's complaint about the URL
        raise RemoteStoreError(f"remote_url {cache.remote_url!r}: {exc}") from None
