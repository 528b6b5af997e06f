"""The remote paths as a mover: jobs between the host pool and a remote store.

``REMOTE_READ`` loads the blocks of ``job.keys`` into host slots ``job.dst_ids`` (the
job's ``src_ids`` are the remote tier's accounting ids, unused here); ``REMOTE_WRITE``
stores host slots ``job.src_ids`` under ``job.keys``. Jobs run on a few worker threads,
each job as batched store calls (the stores pipeline them); the store's calls release
the GIL in their socket and file I/O and in the checksum.

A job never raises out of :meth:`RemoteMover.poll`: a block that is missing or fails the
integrity check, an unreachable store, or any other error, ends the job with
``Done(ok=False, error=...)``. Counters (attributes, read at any time):

- ``read_errors``: blocks a read job could not load (missing, corrupt, store down);
- ``write_errors``: blocks a write job dropped (the store was down or failed);
- ``unavailable``: jobs that found the store unreachable.

An outage is logged once when the first job meets it and once when a job gets through
again, not once per job.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Sequence

from ..core.paths import REMOTE_READ, REMOTE_WRITE
from ..storage.remote.base import RemoteStore, RemoteUnavailable
from ..storage.ssd_io import HostBuffer
from .protocol import Done, Job, drain

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_BATCH_BLOCKS = 16
"""Blocks per store call: a job of more blocks makes several calls."""


class RemoteMover:
    """REMOTE_READ and REMOTE_WRITE between ``host`` (a host pool: ``base_ptr``,
    ``stride``, ``num_blocks``; kept alive by the mover) and ``store``."""

    paths = (REMOTE_READ, REMOTE_WRITE)

    def __init__(
        self,
        store: RemoteStore,
        host: HostBuffer,
        *,
        workers: int = DEFAULT_WORKERS,
        batch_blocks: int = DEFAULT_BATCH_BLOCKS,
    ) -> None:
        if workers < 1 or batch_blocks < 1:
            raise ValueError(
                f"workers and batch_blocks must be >= 1, got {workers}, {batch_blocks}"
            )
        if int(host.stride) != store.stride:
            raise ValueError(
                f"host pool stride {host.stride} differs from the remote store's {store.stride}"
            )
        self.store = store
        self.host = host
        self.stride = int(host.stride)
        self.num_blocks = int(host.num_blocks)
        self.batch_blocks = batch_blocks
        size = self.stride * self.num_blocks
        self._memory = memoryview((ctypes.c_char * size).from_address(int(host.base_ptr))).cast("B")
        self.read_errors = 0
        self.write_errors = 0
        self.unavailable = 0
        self._counts = threading.Lock()  # the counters and the outage state
        self._down_since: float | None = None
        self._failed_in_outage = 0
        self._inbox: queue.SimpleQueue[tuple[Job, float] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"flexkv-remote-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("the remote mover is closed")
        if job.path not in self.paths:
            raise ValueError(f"the remote mover does not serve path {job.path!r}")
        self._inbox.put((job, time.perf_counter()))

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        return drain(self._done, timeout)

    def close(self) -> None:
        """Finish the submitted jobs, then stop the workers (the store stays open: its
        owner closes it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._inbox.put(None)
        for worker in self._workers:
            worker.join()

    # -- workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._inbox.get()) is not None:
            job, submitted = item
            started = time.perf_counter()
            moved, error, first_bad = self._run(job)
            ended = time.perf_counter()
            self._done.put(
                Done(job.job_id, error is None, error, moved, started - submitted,
                     ended - started, first_bad)
            )

    def _run(self, job: Job) -> tuple[int, str | None, int]:
        """Bytes moved, the job's error (None when every block moved) and the first block
        found missing or corrupt (the job's block count when none was: the store could
        not be reached, or the job was refused)."""
        read = job.path == REMOTE_READ
        host_ids = job.dst_ids if read else job.src_ids
        blocks = len(host_ids)
        try:
            self._check(job, host_ids)
        except (ValueError, IndexError) as exc:
            self._count(read, blocks)
            return 0, f"{job.path}: {exc}", blocks
        moved = processed = 0
        failed: list[int] = []
        first_bad = blocks
        try:
            for start in range(0, blocks, self.batch_blocks):
                keys = job.keys[start : start + self.batch_blocks]
                views = [self._view(h) for h in host_ids[start : start + self.batch_blocks]]
                if read:
                    found = self.store.get(keys, views)
                    if not failed and not all(found):
                        first_bad = start + found.index(False)
                    failed += [k for k, ok in zip(keys, found, strict=True) if not ok]
                    moved += sum(found) * self.stride
                else:
                    self.store.put(keys, views)
                    moved += len(keys) * self.stride
                processed += len(keys)
        except RemoteUnavailable as exc:
            self._outage(exc)
            self._count(read, blocks - processed + len(failed))
            return moved, f"{job.path}: remote store unreachable: {exc}", first_bad
        except Exception as exc:  # a store failure or a bug: reported through the job
            self._count(read, blocks - processed + len(failed))
            return moved, f"{job.path} failed: {exc!r}", first_bad
        self._back()
        if failed:
            self._count(read, len(failed))
            return moved, (
                f"{job.path}: {len(failed)} of {blocks} blocks missing or corrupt in the remote "
                f"store (first key {failed[0]:032x})"
            ), first_bad
        return moved, None, blocks

    def _check(self, job: Job, host_ids: Sequence[int]) -> None:
        if len(job.keys) != len(host_ids):
            raise ValueError(f"{len(job.keys)} keys for {len(host_ids)} blocks")
        for h in host_ids:
            if not 0 <= h < self.num_blocks:
                raise IndexError(f"host id {h} out of range [0, {self.num_blocks})")

    def _view(self, host_id: int) -> memoryview:
        start = host_id * self.stride
        return self._memory[start : start + self.stride]

    def _count(self, read: bool, blocks: int) -> None:
        with self._counts:
            if read:
                self.read_errors += blocks
            else:
                self.write_errors += blocks

    def _outage(self, exc: RemoteUnavailable) -> None:
        with self._counts:
            self.unavailable += 1
            self._failed_in_outage += 1
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning(
            "remote store %s unreachable, remote jobs fail until it is back: %s",
            self.store.name,
            exc,
        )

    def _back(self) -> None:
        if self._down_since is None:  # the common case, read without the lock
            return
        with self._counts:
            if self._down_since is None:
                return
            down_s, failed = time.monotonic() - self._down_since, self._failed_in_outage
            self._down_since, self._failed_in_outage = None, 0
        log.warning(
            "remote store %s reachable again after %.1f s (%d jobs failed meanwhile)",
            self.store.name,
            down_s,
            failed,
        )
