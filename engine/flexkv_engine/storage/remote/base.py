"""The remote store interface and the object format every backend stores.

A remote store holds KV blocks by key (the engine's 128-bit chained block hash), so
several engine instances that share one store share each other's blocks. Every call is
synchronous and batched; the :class:`~flexkv_engine.transfer.remote.RemoteMover` runs
them on worker threads so that the KV manager sees the usual submit/poll protocol.
Implementations are thread-safe.

Object format (version 1): a 40-byte header, then the block's bytes::

    offset  size  field
         0     4  magic b"FKVB"
         4     2  format version (1), little-endian
         6     2  header size in bytes (40)
         8    16  the block key, 128-bit little-endian
        24     8  payload length in bytes
        32     4  CRC-32C of the payload
        36     4  CRC-32C of header bytes 0..35

A load checks all of it; an object that fails (another key's bytes, a torn or truncated
write, a flipped bit, another layout's block size) is a failed load, counted in
``corrupt``, never wrong bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ...object_sizes import REMOTE_HEADER_SIZE, gib_to_bytes, object_size

MAGIC = b"FKVB"
VERSION = 1
_HEAD = struct.Struct("<4sHH16sQI")  # everything the header CRC covers
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _CRC.size
assert HEADER_SIZE == REMOTE_HEADER_SIZE, "object_sizes.REMOTE_HEADER_SIZE follows the format"
KEY_BITS = 128


class RemoteUnavailable(RuntimeError):
    """The store cannot be reached (server down, connection refused or lost, the shared
    directory unmounted or failing). Nothing of the call can be trusted to have happened."""


class RemoteStoreError(ValueError):
    """A remote store cannot be opened as configured (unknown backend, bad URL or path)."""


@runtime_checkable
class RemoteStore(Protocol):
    """Blocks by key in a store shared by engine instances. Thread-safe.

    ``stride`` bytes per block; every view handed in is ``stride`` bytes long. Objects
    are named by :func:`key_name`. The store is bounded by a capacity over all its
    writers, with the oldest write evicted first (a rewrite makes a key newest).
    """

    name: str  # "fs" or "redis"
    stride: int
    corrupt: int  # loads refused by the integrity check, by this instance

    def exists(self, keys: Sequence[int]) -> list[bool]:
        """Whether each key has an object; one batched round trip."""
        ...

    def get(self, keys: Sequence[int], views: Sequence[memoryview]) -> list[bool]:
        """Fill ``views[i]`` with the block of ``keys[i]``. False for a missing object or
        one that fails the integrity check; the view's bytes are then undefined."""
        ...

    def put(self, keys: Sequence[int], views: Sequence[memoryview]) -> None:
        """Store each block (replacing an object of the same key), then evict the oldest
        objects while the store is over its capacity."""
        ...

    def delete(self, keys: Sequence[int]) -> int:
        """Remove the objects of ``keys``; returns how many existed."""
        ...

    def size(self) -> tuple[int, int]:
        """``(objects, bytes)`` in the store, written by every instance (headers
        included: the bytes the capacity bounds)."""
        ...

    def close(self) -> None:
        """Release connections and files. Idempotent."""
        ...


def key_name(key: int) -> str:
    """The object name of ``key``: 32 lower-case hex digits."""
    if not 0 <= key < 1 << KEY_BITS:
        raise ValueError(f"block key {key!r} is not a {KEY_BITS}-bit unsigned integer")
    return f"{key:032x}"


def encode_header(key: int, payload: memoryview | bytes) -> bytes:
    """The header of ``key``'s object holding ``payload``."""
    from ... import _native

    head = _HEAD.pack(
        MAGIC, VERSION, HEADER_SIZE, key.to_bytes(16, "little"), len(payload),
        _native.crc32c(payload),
    )  # fmt: skip
    return head + _CRC.pack(_native.crc32c(head))


def check_object(
    key: int, header: bytes | bytearray | memoryview, payload: memoryview
) -> str | None:
    """None when ``header`` and ``payload`` are a sound object of ``key``, else why not."""
    from ... import _native

    if len(header) != HEADER_SIZE:
        return f"object of {len(header) + len(payload)} bytes is shorter than its header"
    head = header[: _HEAD.size]
    magic, version, size, raw_key, length, crc = _HEAD.unpack(head)
    if magic != MAGIC:
        return f"bad magic {bytes(magic)!r}"
    if _CRC.unpack(header[_HEAD.size :])[0] != _native.crc32c(head):
        return "header checksum mismatch"
    if (version, size) != (VERSION, HEADER_SIZE):
        return f"unsupported format version {version} (header {size} bytes)"
    stored = int.from_bytes(raw_key, "little")
    if stored != key:
        return f"object holds key {stored:032x}"
    if length != len(payload):
        return f"payload of {length} bytes, expected {len(payload)} (another layout?)"
    if crc != _native.crc32c(payload):
        return "payload checksum mismatch"
    return None


def check_views(stride: int, keys: Sequence[int], views: Sequence[memoryview]) -> None:
    """Raise ValueError unless ``views`` pairs with ``keys`` and each is ``stride`` bytes."""
    if len(keys) != len(views):
        raise ValueError(f"{len(keys)} keys but {len(views)} views")
    for view in views:
        if view.nbytes != stride:
            raise ValueError(f"a view of {view.nbytes} bytes; blocks are {stride} bytes")


__all__ = [
    "HEADER_SIZE",
    "KEY_BITS",
    "MAGIC",
    "VERSION",
    "RemoteStore",
    "RemoteStoreError",
    "RemoteUnavailable",
    "check_object",
    "check_views",
    "encode_header",
    "gib_to_bytes",
    "key_name",
    "object_size",
]
