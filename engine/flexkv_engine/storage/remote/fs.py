"""The ``fs`` remote store: one file per block in a directory (a shared filesystem mount).

Layout under ``root`` (``remote_url``, a path or ``file://`` URL)::

    root/<prefix>/.usage            objects, bytes, last write stamp (little-endian u64s)
    root/<prefix>/<hh>/<32 hex>     one object per block (base.py: header, then the block)

``<prefix>`` is ``remote_key_prefix`` without its trailing colons (``flexkv:`` ->
``flexkv``; an empty prefix uses ``root`` itself), so stores of different prefixes
share a mount and never see each other; ``<hh>`` is the name's first two hex digits.

**Atomic objects.** A block is written to a temporary name beside its final one
(``.<32 hex>.<unique>.tmp``), then renamed: a reader opens either the old object or the
new one, never half of either (rename is atomic on local filesystems and NFS). Nothing
is fsynced: after a crash an object may be short or zero-filled, and the checksum refuses
it. Temporary files that a crashed writer left behind are removed by the next scan once
older than an hour.

**Capacity.** Renames, deletions and evictions happen under an exclusive ``flock`` of
``.usage`` (and a lock per process, as NFS implements ``flock`` with per-process POSIX
locks), which also updates the counts in that file; so the counts and ``size()`` are
exact across every process and node that shares the directory and honours the lock. Under the
same lock each object gets a write stamp, strictly increasing over all writers
(``max(now, last stamp + 1)`` ns, the last one kept in ``.usage``), set as its mtime
before the rename. Once a put leaves the store over ``capacity_bytes``, the oldest
objects go first, by ``(mtime_ns, name)``: write order (a rewrite is a new file with a
new stamp, so it becomes newest). Each instance keeps the oldest entries of its last directory scan
as eviction candidates; every file written since is newer than all of them, so popping
that list evicts in write order without rescanning, and a candidate that was rewritten
or deleted meanwhile (another inode or mtime, or gone) is skipped. The directory is
scanned again, and the counts reset to what is on disk, when the list runs out.

Caveats: blocks being written to temporary files take disk space before they count (up
to one batch per writer); a filesystem whose ``flock`` fails (ENOLCK, EOPNOTSUPP: some
FUSE mounts) is used without the cross-process lock (logged once), and concurrent
writers may then lose count updates until the next scan resets them, so the store may
exceed its capacity by the writes in flight, and write order falls back to each
writer's clock.

**Unreachable.** Every call first stats ``.usage``: when the store's directory is gone
(an unmounted mount point shows the empty directory below it) or the filesystem fails
(EIO, ESTALE, ENOTCONN, ...), the call raises :class:`RemoteUnavailable`; it works again
once the directory is back (``.usage`` is rebuilt by a scan if it was lost). Opening the
store creates ``root`` (not its parents) and the prefix directory, and a store whose
directory was removed stays unavailable to the instances that have it open until an
instance opened afterwards creates it again. With an empty prefix the objects sit in
``root`` itself: then make ``root`` a directory inside the mount, not the mount point,
so that an unmount shows as a missing directory.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import itertools
import logging
import os
import re
import secrets
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

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

DEFAULT_FS_DIR = "./flexkv_remote"
"""The store's directory when ``remote_url`` is not set."""
USAGE_FILE = ".usage"
_USAGE = struct.Struct("<QQQ")  # objects, bytes, last write stamp (ns)
_NAME = re.compile(r"[0-9a-f]{32}")
_FANOUT = re.compile(r"[0-9a-f]{2}")
_PREFIX = re.compile(r"[A-Za-z0-9._-]+")
TEMP_MAX_AGE_S = 3600.0
"""A temporary file older than this belongs to a crashed writer; a scan removes it."""
MAX_CANDIDATES = 65536
"""Eviction candidates kept from a scan (the oldest objects); more means rarer scans."""
_NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

T = TypeVar("T")

# One lock per usage file (device, inode) in this process: on NFS, flock is a POSIX
# lock, which neither excludes two instances of one process nor survives the close of
# any descriptor of the file by the same process.
_PROCESS_LOCKS: dict[tuple[int, int], threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(ident: tuple[int, int]) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(ident, threading.Lock())


def namespace_dir(root: str | os.PathLike[str], key_prefix: str) -> Path:
    """The directory of the store of ``key_prefix`` under ``root``."""
    name = key_prefix.rstrip(":")
    if not name:
        return Path(root)
    if not _PREFIX.fullmatch(name) or name in (".", ".."):
        raise RemoteStoreError(
            f"remote_key_prefix {key_prefix!r} cannot name a directory of the fs store: "
            "use letters, digits, '.', '_', '-' (and trailing ':')"
        )
    return Path(root) / name


def _unavailable(what: str, exc: OSError) -> RemoteUnavailable:
    code = exc.errno or 0
    reason = os.strerror(code) if code else str(exc)
    return RemoteUnavailable(f"fs remote store: {what}: {reason} (errno {code})")


def _as_bytes(view: memoryview | bytes) -> memoryview:
    mv = memoryview(view)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def _write_all(fd: int, buffers: list[memoryview]) -> None:
    """Write ``buffers`` in order, resuming after short writes."""
    while buffers:
        n = os.writev(fd, buffers)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        _advance(buffers, n)


def _advance(buffers: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes of ``buffers`` (a vectored I/O moved them)."""
    while n:
        if n >= len(buffers[0]):
            n -= len(buffers.pop(0))
        else:
            buffers[0] = buffers[0][n:]
            n = 0


def _read_all(fd: int, buffers: list[memoryview]) -> bool:
    """Fill ``buffers`` from offset 0; False when the file ends first."""
    offset = 0
    while buffers:
        n = os.preadv(fd, buffers, offset)
        if n == 0:
            return False
        offset += n
        _advance(buffers, n)
    return True


class FsRemoteStore:
    """Blocks as files under ``root``; see the module docstring. Thread-safe."""

    name = "fs"

    def __init__(
        self,
        root: str | os.PathLike[str],
        stride: int,
        *,
        key_prefix: str = "flexkv:",
        capacity_bytes: int | None = None,
        max_candidates: int = MAX_CANDIDATES,
    ) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.root = Path(root)
        self.directory = namespace_dir(root, key_prefix)
        self.stride = stride
        self.capacity_bytes = capacity_bytes
        self.corrupt = 0
        self.evicted = 0
        self._max_candidates = max(1, max_candidates)
        self._candidates: deque[tuple[int, str, int]] = deque()
        self._dir = str(self.directory)
        self._usage_path = self.directory / USAGE_FILE
        self._tag = secrets.token_hex(6)
        self._temp_ids = itertools.count()
        self._lock = threading.Lock()  # the usage descriptor and the candidates
        self._counts = threading.Lock()  # corrupt
        self._warned_no_flock = False
        self._fd: int | None = None
        self._ident = (0, 0)
        self._closed = False
        try:
            if not self.root.parent.is_dir():
                raise RemoteStoreError(f"fs remote store: {self.root.parent} is not a directory")
            self.root.mkdir(exist_ok=True)
            self.directory.mkdir(exist_ok=True)
            with self._lock:
                self._open_usage_locked()
        except OSError as exc:
            raise RemoteStoreError(f"fs remote store at {self.directory}: {exc}") from None

    def __repr__(self) -> str:
        return f"FsRemoteStore({str(self.directory)!r}, stride={self.stride})"

    # -- the RemoteStore protocol ---------------------------------------------------------

    def exists(self, keys: Sequence[int]) -> list[bool]:
        names = [key_name(k) for k in keys]
        self._check()
        out = []
        for name in names:
            try:
                os.stat(self._path(name))
            except FileNotFoundError:
                out.append(False)
            except OSError as exc:
                raise _unavailable(f"stat {name}", exc) from None
            else:
                out.append(True)
        return out

    def get(self, keys: Sequence[int], views: Sequence[memoryview]) -> list[bool]:
        check_views(self.stride, keys, views)
        names = [key_name(k) for k in keys]
        self._check()
        header = bytearray(HEADER_SIZE)
        out = []
        for key, name, view in zip(keys, names, views, strict=True):
            path = self._path(name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                out.append(False)
                continue
            except OSError as exc:
                raise _unavailable(f"open {path}", exc) from None
            payload = _as_bytes(view)
            try:
                size = os.fstat(fd).st_size
                whole = size == object_size(self.stride) and _read_all(
                    fd, [memoryview(header), payload]
                )
            except OSError as exc:
                raise _unavailable(f"read {path}", exc) from None
            finally:
                os.close(fd)
            reason: str | None
            if not whole:
                reason = f"{size} bytes on disk, expected {object_size(self.stride)}"
            else:
                reason = check_object(key, header, payload)
            if reason is not None:
                with self._counts:
                    self.corrupt += 1
                log.warning("fs remote store: refused %s: %s", path, reason)
            out.append(reason is None)
        return out

    def put(self, keys: Sequence[int], views: Sequence[memoryview]) -> None:
        check_views(self.stride, keys, views)
        names = [key_name(k) for k in keys]
        self._check()
        staged: list[tuple[str, Path]] = []
        try:
            for key, name, view in zip(keys, names, views, strict=True):
                staged.append((name, self._write_temp(key, name, _as_bytes(view))))
            self._commit(staged)
        except OSError as exc:
            for _, temp in staged:
                with _suppress_os_error():
                    temp.unlink(missing_ok=True)
            raise _unavailable("put", exc) from None

    def delete(self, keys: Sequence[int]) -> int:
        names = [key_name(k) for k in keys]
        self._check()

        def remove() -> int:
            objects, nbytes, stamp = self._read_usage()
            removed = 0
            for name in dict.fromkeys(names):
                path = self._path(name)
                try:
                    size = os.stat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed += 1
                objects, nbytes = objects - 1, nbytes - size
            self._write_usage(objects, nbytes, stamp)
            return removed

        return self._locked("delete", remove)

    def size(self) -> tuple[int, int]:
        self._check()
        objects, nbytes, _ = self._locked("read the usage", self._read_usage)
        return max(objects, 0), max(nbytes, 0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._close_fd_locked()

    def recount(self) -> tuple[int, int]:
        """Scan the directory, reset the shared counts to what is there, and return them."""
        self._check()
        objects, nbytes, _ = self._locked("scan", self._scan_locked)
        return objects, nbytes

    # -- writing ---------------------------------------------------------------------------

    def _write_temp(self, key: int, name: str, payload: memoryview) -> Path:
        folder = self.directory / name[:2]
        temp = folder / f".{name}.{os.getpid()}-{self._tag}.{next(self._temp_ids)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o666)
        except FileNotFoundError:
            with _suppress_os_error(errno.EEXIST):
                os.mkdir(folder)  # fails when the store's directory itself is gone
            fd = os.open(temp, flags, 0o666)
        try:
            _write_all(fd, [memoryview(encode_header(key, payload)), payload])
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def _commit(self, staged: list[tuple[str, Path]]) -> None:
        """Rename the temporary files into place, count them, evict over capacity."""
        size = object_size(self.stride)

        def commit() -> None:
            objects, nbytes, stamp = self._read_usage()
            counts = [objects, nbytes]
            try:
                while staged:
                    name, temp = staged[0]
                    final = self._path(name)
                    # The write stamp, strictly increasing over every writer of the store.
                    stamp = max(time.time_ns(), stamp + 1)
                    os.utime(temp, ns=(stamp, stamp))
                    try:
                        old = os.stat(final).st_size
                    except FileNotFoundError:
                        old = None
                    os.rename(temp, final)
                    staged.pop(0)
                    counts[0] += old is None
                    counts[1] += size - (old or 0)
                self._evict_locked(counts)
            finally:  # what was done counts, even when a call failed half-way
                self._write_usage(counts[0], counts[1], stamp)

        self._locked("commit", commit)

    def _evict_locked(self, counts: list[int]) -> None:
        """Evict the oldest objects until the store is within its capacity; ``counts``
        (objects, bytes) follows each eviction."""
        cap = self.capacity_bytes
        evicted_since_scan = 1  # allow a first scan
        while cap is not None and counts[1] > cap:
            if not self._candidates:
                if not evicted_since_scan:
                    break  # a fresh scan found nothing to evict: the counts were off
                counts[0], counts[1], self._candidates = self._scan_locked()
                evicted_since_scan = 0
                continue
            mtime, name, inode = self._candidates.popleft()
            path = self._path(name)
            try:
                st = os.stat(path)
                if (st.st_ino, st.st_mtime_ns) != (inode, mtime):
                    continue  # rewritten since the scan: now among the newest
                os.unlink(path)
            except FileNotFoundError:
                continue  # deleted or evicted by another instance
            counts[0] -= 1
            counts[1] -= st.st_size
            evicted_since_scan += 1
            self.evicted += 1

    def _scan_locked(self) -> tuple[int, int, deque[tuple[int, str, int]]]:
        """Count every object, remove stale temporary files, keep the oldest objects
        as eviction candidates, and write the counts to ``.usage``."""
        totals = [0, 0, self._read_usage()[2]]
        stale_before = time.time() - TEMP_MAX_AGE_S

        def entries() -> Iterator[tuple[int, str, int]]:
            with os.scandir(self.directory) as folders:
                fanout = [f.path for f in folders if _FANOUT.fullmatch(f.name) and f.is_dir()]
            for folder in fanout:
                with os.scandir(folder) as files:
                    for entry in files:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if _NAME.fullmatch(entry.name):
                            totals[0] += 1
                            totals[1] += st.st_size
                            totals[2] = max(totals[2], st.st_mtime_ns)
                            yield st.st_mtime_ns, entry.name, st.st_ino
                        elif entry.name.endswith(".tmp") and st.st_mtime < stale_before:
                            with _suppress_os_error():
                                os.unlink(entry.path)

        oldest = heapq.nsmallest(self._max_candidates, entries())
        self._write_usage(totals[0], totals[1], totals[2])
        return totals[0], totals[1], deque(oldest)

    # -- paths, the usage file and its lock -----------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self._dir}/{name[:2]}/{name}"  # a str: pathlib costs more than the stat

    def _check(self) -> None:
        """Raise RemoteUnavailable unless the store's directory is there; reopen
        ``.usage`` when it was replaced or lost (the directory came back, a remount)."""
        with self._lock:
            if self._closed:
                raise RemoteStoreError(f"{self!r} is closed")
            try:
                st: os.stat_result | None = os.stat(self._usage_path)
            except FileNotFoundError:
                if not self.directory.is_dir():
                    raise RemoteUnavailable(
                        f"fs remote store: {self.directory} is missing (unmounted?)"
                    ) from None
                st = None
            except OSError as exc:
                raise _unavailable(f"stat {self._usage_path}", exc) from None
            if self._fd is not None and st is not None and (st.st_dev, st.st_ino) == self._ident:
                return
            self._close_fd_locked()
            try:
                self._open_usage_locked()
            except OSError as exc:
                raise _unavailable(f"open {self._usage_path}", exc) from None
            log.info("fs remote store: reopened %s", self._usage_path)

    def _open_usage_locked(self) -> None:
        """Open ``.usage`` (creating it); count the store first when it is new or lost."""
        fd = os.open(self._usage_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        st = os.fstat(fd)
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        if st.st_size < _USAGE.size:

            def count() -> None:
                if os.fstat(fd).st_size < _USAGE.size:  # not counted by another instance
                    self._scan_locked()

            self._run_locked(count)

    def _close_fd_locked(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with _process_lock(self._ident):
                os.close(fd)

    def _locked(self, what: str, body: Callable[[], T]) -> T:
        """Run ``body`` holding this instance's lock, this process's lock of the store
        and the flock of ``.usage``; an OSError in it is RemoteUnavailable."""
        with self._lock:
            if self._closed:
                raise RemoteStoreError(f"{self!r} is closed")
            try:
                if self._fd is None:
                    self._open_usage_locked()
                return self._run_locked(body)
            except OSError as exc:
                raise _unavailable(what, exc) from None

    def _run_locked(self, body: Callable[[], T]) -> T:
        assert self._fd is not None
        with _process_lock(self._ident), self._flocked(self._fd):
            return body()

    @contextmanager
    def _flocked(self, fd: int) -> Iterator[None]:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in _NO_LOCK_ERRNOS:
                raise
            if not self._warned_no_flock:
                self._warned_no_flock = True
                log.warning(
                    "fs remote store: flock on %s fails (%s): writers on other hosts are "
                    "not excluded; counts may drift until the next scan",
                    self._usage_path,
                    os.strerror(exc.errno or 0),
                )
            yield
            return
        try:
            yield
        finally:
            with _suppress_os_error():
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _read_usage(self) -> tuple[int, int, int]:
        assert self._fd is not None
        raw = os.pread(self._fd, _USAGE.size, 0)
        if len(raw) < _USAGE.size:
            return 0, 0, 0
        objects, nbytes, stamp = _USAGE.unpack(raw)
        return objects, nbytes, stamp

    def _write_usage(self, objects: int, nbytes: int, stamp: int) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, _USAGE.pack(max(objects, 0), max(nbytes, 0), stamp), 0)


@contextmanager
def _suppress_os_error(*codes: int) -> Iterator[None]:
    """Ignore an OSError (only those of ``codes`` when given)."""
    try:
        yield
    except OSError as exc:
        if codes and exc.errno not in codes:
            raise


def open_store(cache: Any, stride: int) -> FsRemoteStore:
    """The store that ``cache_config`` (remote_backend ``fs``) names: ``remote_url`` is a
    directory or a ``file://`` URL."""
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
