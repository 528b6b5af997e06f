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

import importlib
from collections.abc import Callable
from typing import Any

from ...config.schema import REMOTE_BACKENDS
from .base import (
    HEADER_SIZE,
    RemoteStore,
    RemoteStoreError,
    RemoteUnavailable,
    gib_to_bytes,
    key_name,
    object_size,
)
from .fs import DEFAULT_FS_DIR


def _opener(backend: str, module: str) -> Callable[[Any, int], RemoteStore]:
    def open_store(cache: Any, stride: int) -> RemoteStore:
        try:
            found = importlib.import_module(f"{__name__}.{module}")
        except ImportError as exc:
            raise RemoteStoreError(
                f"remote_backend {backend!r} cannot be loaded ({exc}): its packages come "
                "with the engine extra (pip install '.[engine]')"
            ) from None
        opened: RemoteStore = found.open_store(cache, stride)
        return opened

    return open_store


#: remote_backend -> opener(cache_config, stride), one per entry of the config schema's
#: ``REMOTE_BACKENDS``: each backend module defines ``open_store(cache_config, stride)``.
REMOTE_STORES: dict[str, Callable[[Any, int], RemoteStore]] = {
    name: _opener(name, module) for name, module in REMOTE_BACKENDS.items()
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
