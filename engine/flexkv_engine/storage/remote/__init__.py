"""The remote tier's stores, chosen by ``cache_config.remote_backend``.

- ``fs`` (the default): a directory, meant for a filesystem that every node mounts
  (``remote_url`` is its path); see :mod:`.fs`.
- ``redis``: a Redis or Valkey server (``remote_url`` ``redis://host:port/db``,
  ``remote_password``); see :mod:`.redis_store`. Needs the ``redis`` package (the
  ``engine`` extra).

Mooncake Store is not offered: we cannot make sure that its sockets (master, metadata
server, transfer engine) stay on 127.0.0.1.

Both bound the store with ``remote_store_capacity_gb`` (over every instance that
shares it), evicting the oldest writes first, and store each block with its key and a
CRC-32C (:mod:`.base`), so a load never returns another block's or damaged bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .base import (
    HEADER_SIZE,
    RemoteStore,
    RemoteStoreError,
    RemoteUnavailable,
    gib_to_bytes,
    key_name,
    object_size,
)

DEFAULT_FS_DIR = "./flexkv_remote"
"""The fs store's directory when ``remote_url`` is not set."""


def _open_fs(cache: Any, stride: int) -> RemoteStore:
    from .fs import FsRemoteStore

    url = cache.remote_url or DEFAULT_FS_DIR
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif "://" in url:
        raise RemoteStoreError(f"the fs remote store takes a directory, got remote_url {url!r}")
    return FsRemoteStore(
        os.path.expanduser(url),
        stride,
        key_prefix=cache.remote_key_prefix,
        capacity_bytes=gib_to_bytes(cache.remote_store_capacity_gb),
    )


def _open_redis(cache: Any, stride: int) -> RemoteStore:
    try:
        from .redis_store import RedisRemoteStore
    except ImportError as exc:
        raise RemoteStoreError(
            f"remote_backend 'redis' needs the redis package ({exc}): "
            "pip install 'redis[hiredis]' (the engine extra)"
        ) from None
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


#: remote_backend -> opener(cache_config, stride). The names are the config schema's
#: ``REMOTE_BACKENDS`` (a test keeps the two equal).
REMOTE_STORES: dict[str, Callable[[Any, int], RemoteStore]] = {
    "fs": _open_fs,
    "redis": _open_redis,
}


def open_remote_store(cache_config: Any, stride: int) -> RemoteStore:
    """The store named by ``cache_config.remote_backend``, for blocks of ``stride``
    bytes. Raises RemoteStoreError when it cannot be opened as configured; a redis
    server is first contacted by the first call (RemoteUnavailable while it is down)."""
    backend = cache_config.remote_backend
    opener = REMOTE_STORES.get(backend)
    if opener is None:
        raise RemoteStoreError(
            f"unknown remote_backend {backend!r}; choose from: {', '.join(sorted(REMOTE_STORES))}"
        )
    return opener(cache_config, stride)


__all__ = [
    "DEFAULT_FS_DIR",
    "HEADER_SIZE",
    "REMOTE_STORES",
    "RemoteStore",
    "RemoteStoreError",
    "RemoteUnavailable",
    "gib_to_bytes",
    "key_name",
    "object_size",
    "open_remote_store",
]
