"""Remote-store fixtures: a real ``redis-server`` on loopback, and stores of both backends.

``redis_server`` starts ``redis-server`` on 127.0.0.1 on a free port (no persistence, a
temporary directory) for one test and stops it after; the test may call its ``stop()``
and ``start()`` (or ``restart()``) to take the store away and bring it back on the same
port. ``redis_server_factory(password=...)`` starts more, e.g. one with ``--requirepass``.
Tests that use them carry ``@pytest.mark.redis``, which skips them, saying why, when
``redis-server`` is not installed.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flexkv_engine.storage.remote import RemoteStore
from flexkv_engine.storage.remote.fs import FsRemoteStore
from flexkv_engine.storage.remote.redis_server import LocalRedisServer

STRIDE = 8192  # small blocks keep the tests quick; the format does not care
BACKENDS = ["fs", pytest.param("redis", marks=pytest.mark.redis)]


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., LocalRedisServer]]:
    """Start ``LocalRedisServer(**options)`` servers; all are stopped after the test."""
    _need_redis_server()
    servers: list[LocalRedisServer] = []

    def start(**options: object) -> LocalRedisServer:
        server = LocalRedisServer(**options)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., LocalRedisServer]) -> LocalRedisServer:
    """One ``redis-server`` on 127.0.0.1 without a password."""
    return redis_server_factory()


def random_blocks(n: int, stride: int = STRIDE, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(stride) for _ in range(n)]


def random_keys(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed + 1000)
    return [rng.getrandbits(128) for _ in range(n)]


def poisoned(n: int, stride: int = STRIDE) -> list[bytearray]:
    """Destination buffers filled with a pattern that no random block matches."""
    return [bytearray(b"\xa5" * stride) for _ in range(n)]


class StoreFactory:
    """Opens stores of one backend on one place (a directory, or one redis server), so
    that several stores of a test share it as several engine instances would.
    ``outage()`` takes the place away (server stopped, directory moved as if unmounted)
    and ``restore()`` brings it back."""

    def __init__(self, backend: str, tmp_path: Path, server: LocalRedisServer | None) -> None:
        self.backend = backend
        self.root = tmp_path / "remote"
        self.server = server
        self.stores: list[RemoteStore] = []

    def __call__(
        self,
        *,
        prefix: str = "flexkv:",
        capacity: int | None = None,
        stride: int = STRIDE,
        password: str | None = None,
    ) -> RemoteStore:
        store: RemoteStore
        if self.backend == "fs":
            store = FsRemoteStore(self.root, stride, key_prefix=prefix, capacity_bytes=capacity)
        else:
            from flexkv_engine.storage.remote.redis_store import RedisRemoteStore

            assert self.server is not None
            if password is None:
                password = self.server.password
            store = RedisRemoteStore(
                self.server.url,
                stride,
                key_prefix=prefix,
                password=password,
                capacity_bytes=capacity,
                connect_timeout=2.0,
                socket_timeout=5.0,
            )
        self.stores.append(store)
        return store

    def outage(self) -> None:
        if self.server is not None:
            self.server.stop()
        else:
            self.root.rename(self.root.with_name("unmounted"))

    def restore(self) -> None:
        if self.server is not None:
            self.server.start()
        else:
            self.root.with_name("unmounted").rename(self.root)

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A :class:`StoreFactory` of each backend (redis: on a fresh server)."""
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    factory = StoreFactory(request.param, tmp_path, server)
    yield factory
    factory.close()
