"""The mover protocol: what the KV manager's workers ask of every data path."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """Move ``len(src_ids)`` blocks along ``path``: block ``src_ids[i]`` -> ``dst_ids[i]``.

    Ids are block ids of the source and destination places (GPU cache, host pool, SSD).
    ``keys`` are the blocks' keys, ``keys[i]`` for block ``i``: the remote store names its
    objects by key (its tier ids are this instance's accounting only); the SSD path
    records them, with ``parent`` (the key of the block before ``keys[0]`` in its
    sequence; None for a first block), so that its index can be rebuilt after a restart.
    Other paths ignore them.
    """

    job_id: int
    path: str
    src_ids: Sequence[int]
    dst_ids: Sequence[int]
    keys: Sequence[int] = ()
    parent: int | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """A finished job: ``queue_s`` waiting for the device, ``transfer_s`` moving bytes.

    ``first_bad`` (a failed job): the first of its blocks that may be bad; the blocks
    before it moved, and were checked where the path checks, without fault.
    """

    job_id: int
    ok: bool
    error: str | None
    num_bytes: int
    queue_s: float
    transfer_s: float
    first_bad: int = 0


class Mover(Protocol):
    """One data path. ``submit`` returns at once; ``poll`` returns jobs that finished."""

    paths: tuple[str, ...]

    def submit(self, job: Job) -> None: ...

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        """Finished jobs; waits up to ``timeout`` seconds for one (None: until one ends)."""
        ...

    def close(self) -> None: ...


def drain(done: queue.SimpleQueue[Done], timeout: float | None = 0.0) -> list[Done]:
    """What a thread-backed mover's ``poll`` returns: the finished jobs queued in
    ``done``, waiting up to ``timeout`` seconds for the first (None: until one ends)."""
    out: list[Done] = []
    try:
        out.append(done.get(timeout=timeout) if timeout != 0.0 else done.get_nowait())
    except queue.Empty:
        return out
    while True:
        try:
            out.append(done.get_nowait())
        except queue.Empty:
            return out
