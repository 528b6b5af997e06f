"""The SSD paths as a mover: jobs go to an io_uring or thread backend of ``storage.ssd_io``.

With a slot table (:mod:`..storage.ssd_table`) every block is checked. A write clears
the records of its slots before its bytes go out, and stores them (key, parent key,
crc32c of the block) once the backend reports them written, before the op is reported
done. A read compares each block's crc32c and key with its record before the op is
reported done; a block that does not verify fails the op, so its bytes never reach the
GPU (the GET counts it as a miss).

Checksums are computed over the host slots with the GIL released (``_native.crc32c``),
overlapping the I/O: a write's blocks are summed on a helper thread while the backend
writes them (the source blocks are locked and do not change); a read goes to the
backend in pieces of about ``PIECE_BYTES``, each checked on the poller thread as soon as
it lands while the next ones are still moving. The op's ``transfer_s`` runs from its
first I/O issued to its last block recorded or checked.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..core.paths import SSD_READ, SSD_WRITE
from ..storage.ssd_table import SlotTable
from .protocol import Done, Job

PIECE_BYTES = 1 << 20


@dataclass
class _Pending:
    """A job in flight, as pieces ``[start, end)`` of its block lists."""

    write: bool
    ssd: Sequence[int]
    host: Sequence[int]
    keys: Sequence[int]
    parent: int | None
    submitted: float
    pieces: int
    error: str | None = None
    bytes: int = 0
    queue_s: float = float("inf")
    first_bad: int = 0  # with an error: the first block that may be bad
    crcs: Future[list[int]] | None = None  # a write's checksums, summed during the I/O


class SsdMover:
    """SSD read (SSD -> host pool) and write (host pool -> SSD) on one backend.

    ``table``: the slot table to keep and check (the mover closes it); it needs ``host``,
    the host pool the backend moves blocks to and from (``base_ptr``, ``stride``,
    ``num_blocks``).
    """

    paths = (SSD_READ, SSD_WRITE)

    def __init__(self, backend: Any, table: SlotTable | None = None, host: Any = None) -> None:
        self.backend = backend
        self.table = table
        # Failed jobs (checksum mismatches included), and blocks read back that did not
        # match their records.
        self.reads_failed = self.writes_failed = self.checksum_errors = 0
        self._pending: dict[int, _Pending] = {}
        self._pieces: dict[int, tuple[int, int, int]] = {}  # backend id -> (job, start, end)
        self._piece_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._per_piece = 0  # blocks per piece of a read; 0: a job is one piece
        self._summer: ThreadPoolExecutor | None = None
        if table is None:
            return
        if host is None:
            raise ValueError("checking SSD blocks needs the host pool")
        from .. import _native

        self._crc32c = _native.crc32c
        self._files = backend.files
        self._per_piece = max(1, PIECE_BYTES // self._files.stride)
        size = int(host.stride) * int(host.num_blocks)
        self._host_owner = host  # keeps the memory alive
        self._num_host = int(host.num_blocks)
        raw = (ctypes.c_char * size).from_address(int(host.base_ptr))
        self._host = memoryview(raw).cast("B")
        self._host_stride = int(host.stride)
        self._summer = ThreadPoolExecutor(1, thread_name_prefix="flexkv-ssd-crc")

    def submit(self, job: Job) -> None:
        write = job.path == SSD_WRITE
        ssd, host = (job.dst_ids, job.src_ids) if write else (job.src_ids, job.dst_ids)
        n = len(ssd)
        per = max(n, 1) if write or not self._per_piece else self._per_piece
        bounds = [(a, min(a + per, n)) for a in range(0, n, per)] or [(0, 0)]
        if len(bounds) > 1:
            self._check_ids(ssd, host)  # all or nothing: no piece is queued on a bad id
        pieces = [(next(self._piece_ids), a, b) for a, b in bounds]
        pending = _Pending(write, ssd, host, job.keys, job.parent, time.perf_counter(), len(pieces))
        with self._lock:
            if job.job_id in self._pending:
                raise ValueError(f"job id {job.job_id} is already in flight")
            self._pending[job.job_id] = pending
            for piece, a, b in pieces:
                self._pieces[piece] = (job.job_id, a, b)
        if write and self.table is not None:
            self.table.clear(ssd)  # a kill from here on loses these blocks, no more
            assert self._summer is not None
            pending.crcs = self._summer.submit(lambda: [self._crc(h) for h in host])
        try:
            for piece, a, b in pieces:
                self.backend.submit(piece, write, ssd[a:b], host[a:b])
        except BaseException:
            with self._lock:
                del self._pending[job.job_id]
                for piece, _, _ in pieces:
                    del self._pieces[piece]
            raise

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        out = []
        for c in self.backend.poll(timeout):
            with self._lock:
                job_id, start, end = self._pieces.pop(c.job_id)
                p = self._pending[job_id]
            bad: tuple[int, str] | None = None
            if not c.ok:
                bad = (start, c.error or "ssd I/O failed")
            elif self.table is not None and not p.write:
                bad = self._verify(p, start, end)  # even after an error: find the first bad
            elif self.table is not None and p.error is None:
                self._record(p, start, end)
            if bad is not None:
                p.first_bad = bad[0] if p.error is None else min(p.first_bad, bad[0])
                p.error = p.error or bad[1]
            p.bytes += c.bytes
            p.queue_s = min(p.queue_s, c.queue_s)
            p.pieces -= 1
            if p.pieces:
                continue
            with self._lock:
                del self._pending[job_id]
            if p.error is not None and p.write:
                self.writes_failed += 1
            elif p.error is not None:
                self.reads_failed += 1
            total = time.perf_counter() - p.submitted
            transfer_s = max(total - p.queue_s, 0.0)
            out.append(
                Done(job_id, p.error is None, p.error, p.bytes, p.queue_s, transfer_s, p.first_bad)
            )
        return out

    def close(self) -> None:
        self.backend.close()
        if self._summer is not None:
            self._summer.shutdown()
        if self.table is not None:
            self.table.close()

    # -- checks ----------------------------------------------------------------------
    def _check_ids(self, ssd: Sequence[int], host: Sequence[int]) -> None:
        if len(ssd) != len(host):
            raise ValueError(f"ssd_ids and host_ids differ in length ({len(ssd)} != {len(host)})")
        for s in ssd:
            if not 0 <= s < self._files.num_blocks:
                raise IndexError(f"ssd id {s} out of range [0, {self._files.num_blocks})")
        for h in host:
            if not 0 <= h < self._num_host:
                raise IndexError(f"host id {h} out of range [0, {self._num_host})")

    def _crc(self, host_id: int) -> int:
        start = host_id * self._host_stride
        return int(self._crc32c(self._host[start : start + self._files.stride]))

    def _record(self, p: _Pending, start: int, end: int) -> None:
        assert self.table is not None and p.crcs is not None
        keys = p.keys[start:end] if p.keys else ()
        parent = p.parent if start == 0 else (p.keys[start - 1] if p.keys else None)
        self.table.store(p.ssd[start:end], p.crcs.result()[start:end], keys, parent)

    def _verify(self, p: _Pending, start: int, end: int) -> tuple[int, str] | None:
        """None when every block of the piece matches its record, else the first that
        does not and what is wrong with it."""
        table = self.table
        assert table is not None
        for i in range(start, end):
            slot = p.ssd[i]
            record = table.get(slot)
            if record is None:
                problem = "has no valid record in the slot table"
            elif p.keys and record.key is not None and record.key != p.keys[i]:
                problem = f"holds key {record.key:#x}, not {p.keys[i]:#x}"
            else:
                crc = self._crc(p.host[i])
                if crc == record.crc:
                    continue
                problem = f"fails its checksum (crc32c {crc:#010x}, recorded {record.crc:#010x})"
            self.checksum_errors += 1
            index, offset = self._files.locate(slot)
            return i, f"read {self._files.paths[index]} offset {offset}: ssd block {slot} {problem}"
        return None
