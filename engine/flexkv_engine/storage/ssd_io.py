"""Moving blocks between the host pool and the SSD block files: the ``SsdBackend`` protocol.

The host pool is one buffer of ``num_host_blocks`` slots of ``host_stride`` bytes at
``host_base_ptr`` (4096-aligned, stride a multiple of 4096, as O_DIRECT needs). A backend
reaches it through that raw address, so any owner works (a pinned torch tensor, a numpy
array, an mmap). Give either the three numbers, and keep the memory alive until the
backend is closed, or a host pool object with ``base_ptr``, ``stride`` and
``num_blocks`` attributes (:class:`HostBuffer`), which the backend then holds on to.
SSD geometry comes from :class:`SsdFiles` (block ``b`` in file ``b % nfiles`` at offset
``(b // nfiles) * stride``); one block moves ``files.stride`` bytes.

A *job* moves a list of blocks in one direction. ``submit`` returns at once; ``poll``
returns finished jobs as :class:`SsdCompletion`. Blocks adjacent both in one file and in
the host pool are merged into one I/O of at most ``max_io_bytes``. Short reads and writes
resume where they stopped, ``EAGAIN``/``EINTR`` are retried, and the first other failure
of a job is reported as ``"<read|write> <path> offset <n>: <strerror> (errno <e>)"`` (or
``unexpected end of file`` when a file is shorter than the block map says); the job's
I/Os not yet started are then dropped.

Two implementations: :class:`UringSsdBackend` (``_native.UringEngine``, C++ and
liburing) and :class:`ThreadSsdBackend` (``os.preadv``/``os.pwritev`` on a thread pool).
:func:`open_ssd_backend` picks one once.

Faults. Both backends take an :class:`SsdFault` through ``inject_fault`` (a test hook):
the I/Os run, and the backend sees the injected result in their place (``-EIO``,
``-ENOSPC``, end of file), so the failure paths of the backend and of everything above
it run as they would on a failing disk.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import operator
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..core.ssd_ios import MAX_IO_BYTES
from .ssd_files import ALIGN, SsdFiles

log = logging.getLogger(__name__)

DEFAULT_MAX_IO_BYTES = MAX_IO_BYTES
"""Merge adjacent blocks into I/Os up to this size (a block larger than this is one I/O)."""
BACKENDS = ("auto", "io_uring", "threads")
_MAX_THREADS = 32
_DEFAULT_THREADS = 8


@dataclass(frozen=True)
class SsdFault:
    """An injected failure: the next ``count`` I/O completions of ``op`` (``"read"``,
    ``"write"`` or ``"any"``), after ``skip`` of them, report ``-errno`` instead of what
    the disk did (``errno=0``: zero bytes, i.e. end of file for a read, no progress for a
    write). A short I/O's resumption is a completion of its own. ``count=-1``: every
    matching completion from then on."""

    op: str = "any"
    errno: int = errno.EIO
    count: int = 1
    skip: int = 0

    def __post_init__(self) -> None:
        if self.op not in _FAULT_OPS:
            raise ValueError(f"unknown fault op {self.op!r}; choose from: read, write, any")
        if self.errno < 0 or self.count < -1 or self.skip < 0:
            raise ValueError(f"bad fault {self}: errno >= 0, count >= -1, skip >= 0")

    @property
    def result(self) -> int:
        """What the completion reports: ``-errno``, or 0 bytes."""
        return -self.errno

    def matches(self, write: bool) -> bool:
        return self.op in ("any", "write" if write else "read")


_FAULT_OPS = {"read": 0, "write": 1, "any": 2}


@dataclass(frozen=True)
class SsdCompletion:
    """One finished job. ``bytes`` counts the bytes moved (all of them when ``ok``)."""

    job_id: int
    ok: bool
    error: str | None
    bytes: int
    queue_s: float  # submit -> first I/O issued
    transfer_s: float  # first I/O issued -> last I/O completed


@runtime_checkable
class HostBuffer(Protocol):
    """What a backend needs of a host pool object (e.g. ``storage.host_pool.HostPool``)."""

    base_ptr: int
    stride: int
    num_blocks: int


HostArg = int | HostBuffer


def _resolve_host(
    host: HostArg, stride: int | None, count: int | None
) -> tuple[int, int, int, object]:
    """``(base address, stride, slot count, object to keep alive)`` from either form."""
    if not hasattr(host, "base_ptr"):
        if stride is None or count is None:
            raise TypeError("with a raw host address, give host_stride and num_host_blocks")
        return operator.index(host), stride, count, None  # type: ignore[arg-type]
    ptr, own_stride, own_count = int(host.base_ptr), int(host.stride), int(host.num_blocks)
    if (stride not in (None, own_stride)) or (count not in (None, own_count)):
        raise ValueError(
            f"host_stride/num_host_blocks ({stride}, {count}) contradict the host pool "
            f"({own_stride}, {own_count})"
        )
    return ptr, own_stride, own_count, host


@runtime_checkable
class SsdBackend(Protocol):
    """Moves blocks between the host pool and the SSD files, asynchronously."""

    name: str  # "io_uring" or "threads"

    def submit(
        self, job_id: int, write: bool, ssd_ids: Sequence[int], host_ids: Sequence[int]
    ) -> None:
        """Start moving ``len(ssd_ids)`` blocks: host slot ``host_ids[i]`` <-> SSD block
        ``ssd_ids[i]`` (``write``: host to SSD). Returns at once. Raises IndexError naming
        an id out of range, ValueError on a length mismatch or a ``job_id`` still in flight,
        RuntimeError once closed; nothing is queued then. Thread-safe."""
        ...

    def poll(self, timeout: float | None = 0.0) -> list[SsdCompletion]:
        """Finished jobs, each returned once; waits up to ``timeout`` seconds (None:
        forever) for at least one, with the GIL released. Returns [] at once when closed
        and nothing is left."""
        ...

    def close(self) -> None:
        """Wait for every submitted job to finish, then stop. Idempotent."""
        ...


@functools.cache
def io_uring_unavailable_reason() -> str | None:
    """None when the io_uring engine can run here, else why not (probed once)."""
    try:
        from .. import _native
    except ImportError as exc:
        return f"native module not importable: {exc}"
    probe = getattr(_native, "uring_probe", None)
    if probe is None:
        return "native module too old (no uring_probe): run `make native`"
    return probe()


def open_ssd_backend(
    files: SsdFiles,
    host_base_ptr: HostArg,
    host_stride: int | None = None,
    num_host_blocks: int | None = None,
    *,
    queue_depth: int,
    prefer: str = "auto",
    max_io_bytes: int = DEFAULT_MAX_IO_BYTES,
) -> SsdBackend:
    """The io_uring backend when ``queue_depth > 0`` and io_uring works on this kernel,
    else the thread backend. ``prefer="io_uring"`` or ``"threads"`` forces one; a forced
    io_uring that cannot run raises RuntimeError with the reason. ``queue_depth`` is the
    ring's in-flight I/O bound (``ssd_cache_iouring_entries``), or the thread count of
    the fallback (capped at 32; 0 means 8 threads). ``host_base_ptr`` may also be a host
    pool object (:class:`HostBuffer`); then the two numbers after it may be left out."""
    if prefer not in BACKENDS:
        raise ValueError(f"unknown ssd backend {prefer!r}; choose from: {', '.join(BACKENDS)}")
    threads = min(queue_depth, _MAX_THREADS) if queue_depth > 0 else _DEFAULT_THREADS
    args = (files, host_base_ptr, host_stride, num_host_blocks)
    if prefer == "threads" or (prefer == "auto" and queue_depth <= 0):
        return ThreadSsdBackend(*args, num_threads=threads, max_io_bytes=max_io_bytes)
    if queue_depth <= 0:
        raise ValueError("the io_uring backend needs queue_depth > 0 (0 means no io_uring)")
    reason = io_uring_unavailable_reason()
    if reason is None:
        try:
            return UringSsdBackend(*args, queue_depth=queue_depth, max_io_bytes=max_io_bytes)
        except RuntimeError as exc:
            reason = str(exc)
    if prefer == "io_uring":
        raise RuntimeError(f"the io_uring SSD backend cannot run here: {reason}")
    log.warning("io_uring unavailable (%s); SSD I/O uses %d pread/pwrite threads", reason, threads)
    return ThreadSsdBackend(*args, num_threads=threads, max_io_bytes=max_io_bytes)


def _check_host(files: SsdFiles, base: int, stride: int, count: int) -> None:
    if base <= 0 or base % ALIGN:
        raise ValueError(f"host_base_ptr must be a {ALIGN}-aligned address, got {base:#x}")
    if stride < files.stride or stride % ALIGN:
        raise ValueError(
            f"host_stride must be a multiple of {ALIGN} and >= the SSD stride "
            f"{files.stride}, got {stride}"
        )
    if count < 1:
        raise ValueError(f"num_host_blocks must be >= 1, got {count}")
    if files.closed:
        raise ValueError("the SSD files are closed")


class UringSsdBackend:
    """io_uring backend: the C++ engine ``_native.UringEngine`` (one worker thread owns
    the ring and keeps at most ``queue_depth`` I/Os in flight)."""

    name = "io_uring"

    def __init__(
        self,
        files: SsdFiles,
        host_base_ptr: HostArg,
        host_stride: int | None = None,
        num_host_blocks: int | None = None,
        *,
        queue_depth: int,
        max_io_bytes: int = DEFAULT_MAX_IO_BYTES,
        inject_short: bool = False,
        inject_eagain: bool = False,
    ) -> None:
        from .. import _native

        host_base_ptr, host_stride, num_host_blocks, self._host_owner = _resolve_host(
            host_base_ptr, host_stride, num_host_blocks
        )
        _check_host(files, host_base_ptr, host_stride, num_host_blocks)
        if not hasattr(_native, "UringEngine"):
            raise RuntimeError(io_uring_unavailable_reason() or "no UringEngine in _native")
        self.files = files
        self._engine = _native.UringEngine(
            list(files.fds),
            list(files.paths),
            host_base_ptr,
            host_stride,
            num_host_blocks,
            files.stride,
            files.num_blocks,
            queue_depth,
            max_io_bytes,
            inject_short,
            inject_eagain,
        )

    @property
    def features(self) -> str:
        """Ring flags the kernel accepted, and whether files are registered."""
        return str(self._engine.features())

    def submit(
        self, job_id: int, write: bool, ssd_ids: Sequence[int], host_ids: Sequence[int]
    ) -> None:
        self._engine.submit(job_id, write, ssd_ids, host_ids)

    def poll(self, timeout: float | None = 0.0) -> list[SsdCompletion]:
        return [SsdCompletion(*done) for done in self._engine.poll(0, timeout)]

    def close(self) -> None:
        self._engine.close()

    def inject_fault(self, fault: SsdFault | None) -> None:
        """Arm ``fault`` (replacing one armed before), or disarm with None. Test hook."""
        if fault is None:
            self._engine.inject_fault(2, 0, 0, 0)
        else:
            self._engine.inject_fault(_FAULT_OPS[fault.op], fault.result, fault.skip, fault.count)


# ---- the thread fallback -------------------------------------------------------------------


@dataclass
class _Io:
    file: int
    offset: int
    host: int  # byte offset in the host pool
    length: int


@dataclass
class _Job:
    job_id: int
    write: bool
    unfinished: int
    submitted: float
    bytes: int = 0
    error: str | None = None
    first_issue: float | None = None
    last_done: float | None = None


def plan_ios(
    files: SsdFiles,
    host_stride: int,
    num_host_blocks: int,
    ssd_ids: Sequence[int],
    host_ids: Sequence[int],
    max_io_bytes: int,
) -> list[_Io]:
    """Check the ids and turn them into I/Os, merging blocks adjacent on both sides (the
    same rule as the C++ engine, so both report the same offsets in errors)."""
    if len(ssd_ids) != len(host_ids):
        raise ValueError(
            f"ssd_ids and host_ids differ in length ({len(ssd_ids)} != {len(host_ids)})"
        )
    stride, nfiles, nssd = files.stride, files.nfiles, files.num_blocks
    limit = max(max_io_bytes, stride)
    ios: list[_Io] = []
    for s_raw, h_raw in zip(ssd_ids, host_ids, strict=True):
        s, h = int(s_raw), int(h_raw)
        if not 0 <= s < nssd:
            raise IndexError(f"ssd id {s} out of range [0, {nssd})")
        if not 0 <= h < num_host_blocks:
            raise IndexError(f"host id {h} out of range [0, {num_host_blocks})")
        file, offset, host = s % nfiles, (s // nfiles) * stride, h * host_stride
        if ios:
            last = ios[-1]
            if (
                last.file == file
                and last.offset + last.length == offset
                and last.host + last.length == host
                and last.length + stride <= limit
            ):
                last.length += stride
                continue
        ios.append(_Io(file, offset, host, stride))
    return ios


class ThreadSsdBackend:
    """Fallback backend: ``os.preadv``/``os.pwritev`` on a pool of threads (CPython drops
    the GIL in the syscalls). Each I/O is one work item, so a job's blocks run in
    parallel; ``num_threads`` plays the part of the queue depth."""

    name = "threads"

    def __init__(
        self,
        files: SsdFiles,
        host_base_ptr: HostArg,
        host_stride: int | None = None,
        num_host_blocks: int | None = None,
        *,
        num_threads: int = _DEFAULT_THREADS,
        max_io_bytes: int = DEFAULT_MAX_IO_BYTES,
        inject_short: bool = False,
        inject_eagain: bool = False,
    ) -> None:
        host_base_ptr, host_stride, num_host_blocks, self._host_owner = _resolve_host(
            host_base_ptr, host_stride, num_host_blocks
        )
        _check_host(files, host_base_ptr, host_stride, num_host_blocks)
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.files = files
        self._stride = host_stride
        self._num_host = num_host_blocks
        self._max_io = max_io_bytes
        self._inject_short = inject_short
        self._inject_eagain = inject_eagain
        self._fault: SsdFault | None = None
        self._fault_skip = self._fault_count = 0
        size = host_stride * num_host_blocks
        self._host = memoryview((ctypes.c_char * size).from_address(host_base_ptr)).cast("B")
        self._cv = threading.Condition()
        self._live: set[int] = set()
        self._finished: deque[SsdCompletion] = deque()
        self._closing = False
        self._work: queue.SimpleQueue[tuple[_Job, _Io] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"flexkv-ssd-{i}", daemon=True)
            for i in range(num_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, job_id: int, write: bool, ssd_ids: Sequence[int], host_ids: Sequence[int]
    ) -> None:
        ios = plan_ios(self.files, self._stride, self._num_host, ssd_ids, host_ids, self._max_io)
        job = _Job(job_id, bool(write), len(ios), time.monotonic())
        with self._cv:
            if self._closing:
                raise RuntimeError("the thread SSD backend is closed")
            if job_id in self._live:
                raise ValueError(f"job id {job_id} is already in flight")
            self._live.add(job_id)
            if not ios:
                self._finish_locked(job)
                return
            for io in ios:  # under the lock: close() queues its stop marks after these
                self._work.put((job, io))

    def poll(self, timeout: float | None = 0.0) -> list[SsdCompletion]:
        with self._cv:
            if not self._finished and (timeout is None or timeout > 0):
                self._cv.wait_for(
                    lambda: bool(self._finished) or (self._closing and not self._live), timeout
                )
            done = list(self._finished)
            self._finished.clear()
        return done

    def inject_fault(self, fault: SsdFault | None) -> None:
        """Arm ``fault`` (replacing one armed before), or disarm with None. Test hook."""
        with self._cv:
            self._fault = fault
            self._fault_skip = fault.skip if fault is not None else 0
            self._fault_count = fault.count if fault is not None else 0

    def _faulted(self, write: bool) -> int | None:
        """The injected result of this completion, if a fault is due (mirrors the C++)."""
        with self._cv:
            fault = self._fault
            if fault is None or self._fault_count == 0 or not fault.matches(write):
                return None
            if self._fault_skip > 0:
                self._fault_skip -= 1
                return None
            if self._fault_count > 0:
                self._fault_count -= 1
            return fault.result

    def close(self) -> None:
        with self._cv:
            if self._closing:
                return
            self._closing = True
        for _ in self._threads:
            self._work.put(None)  # behind every queued I/O: the queue drains first
        for thread in self._threads:
            thread.join()
        with self._cv:
            self._cv.notify_all()

    # -- workers --

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            job, io = item
            with self._cv:
                dropped = job.error is not None
                if not dropped and job.first_issue is None:
                    job.first_issue = time.monotonic()
            try:
                moved, error = (0, None) if dropped else self._transfer(job.write, io)
            except Exception as exc:  # a bug, not an I/O error: report it, keep the worker
                moved, error = 0, f"{'write' if job.write else 'read'} failed: {exc!r}"
            with self._cv:
                job.bytes += moved
                if not dropped:
                    job.last_done = time.monotonic()
                if error is not None and job.error is None:
                    job.error = error
                job.unfinished -= 1
                if job.unfinished == 0:
                    self._finish_locked(job)

    def _transfer(self, write: bool, io: _Io) -> tuple[int, str | None]:
        fd, path = self.files.fds[io.file], self.files.paths[io.file]
        view = self._host[io.host : io.host + io.length]
        op = "write" if write else "read"
        done, eagain_due = 0, self._inject_eagain
        while done < io.length:
            count = io.length - done
            if self._inject_short and count > ALIGN:
                count = max(ALIGN, (count // 2) & ~(ALIGN - 1))
            chunk = [view[done : done + count]]
            try:
                if eagain_due:
                    eagain_due = False
                    raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                if write:
                    n = os.pwritev(fd, chunk, io.offset + done)
                else:
                    n = os.preadv(fd, chunk, io.offset + done)
                forced = self._faulted(write) if self._fault is not None else None
                if forced is not None and forced < 0:
                    raise OSError(-forced, os.strerror(-forced))
                n = n if forced is None else forced
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                code = exc.errno or 0
                where = f"{op} {path} offset {io.offset + done}"
                return done, f"{where}: {os.strerror(code)} (errno {code})"
            if n == 0:
                where = f"{op} {path} offset {io.offset + done}"
                if write:
                    return done, f"{where}: no progress (0 bytes written of {io.length - done})"
                return done, f"{where}: unexpected end of file (got {done} of {io.length} bytes)"
            done += n
        return done, None

    def _finish_locked(self, job: _Job) -> None:
        start = job.first_issue if job.first_issue is not None else job.submitted
        end = job.last_done if job.last_done is not None else start
        self._finished.append(
            SsdCompletion(
                job.job_id,
                job.error is None,
                job.error,
                job.bytes,
                start - job.submitted,
                end - start,
            )
        )
        self._live.discard(job.job_id)
        self._cv.notify_all()
