"""Sizes of what the remote stores hold: pure arithmetic, shared by both tools.

The twin's store model needs how many objects fit in ``remote_store_capacity_gb``; that
is arithmetic on the object format (``storage.remote.base``), kept here so that the twin
imports no storage code. Standard library only.
"""

from __future__ import annotations

#: Bytes of a stored object's header (object format version 1, storage.remote.base).
REMOTE_HEADER_SIZE = 40


def object_size(stride: int) -> int:
    """Bytes of one stored object: header and payload."""
    return REMOTE_HEADER_SIZE + stride


def gib_to_bytes(gib: float | None) -> int | None:
    """A ``*_gb`` capacity (GiB) in bytes; None stays None (no bound)."""
    return None if gib is None else int(gib * 2**30)
