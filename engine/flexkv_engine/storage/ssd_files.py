"""The SSD tier's block files: creation, ownership, geometry, and the block -> file map.

Layout. ``num_blocks`` blocks of ``stride`` bytes are striped over ``nfiles`` files::

    file index  f(b) = b % nfiles
    offset      o(b) = (b // nfiles) * stride

File ``i`` is ``blocks-<i:03d>.bin`` in directory ``dirs[i % ndirs]``, so consecutive
blocks rotate over the directories (and so over the disks behind them). ``nfiles`` is a
multiple of ``ndirs``: one file per directory unless ``max_file_size`` bounds a file, then
as many per directory as needed. File ``i`` holds ``ceil((num_blocks - i) / nfiles)``
blocks.

Ownership. Every directory in use carries a marker file, ``.flexkv-twin-ssd`` (JSON: the
format version and the geometry: stride, block count, file count, the directory's place
in the list). A directory that holds anything but its marker and its own block files
(and, in the first directory, the slot table ``slots.bin`` of :mod:`.ssd_table`) is
refused, so that a mistyped path never overwrites someone's data. A directory already
marked with the same geometry is reopened as it is (its blocks keep their bytes;
``reopened`` and ``found_sizes`` tell what was there); a different geometry is an
error. The marker is held under ``flock`` while open, so two processes cannot share a
cache directory.

Files are preallocated (``posix_fallocate``; ``ftruncate`` where the filesystem refuses)
and opened with ``O_DIRECT``, so reads come from the device, not the page cache; buffered
I/O is used, with a warning, only where ``O_DIRECT`` is refused (e.g. an old tmpfs).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.ssd_ios import num_files

log = logging.getLogger(__name__)

MARKER = ".flexkv-twin-ssd"
SLOT_TABLE = "slots.bin"  # per-block records (storage/ssd_table.py), first directory only
FORMAT_VERSION = 1
ALIGN = 4096  # O_DIRECT alignment of offsets, lengths and host addresses
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class SsdFilesError(ValueError):
    """A cache directory cannot be used: not ours, another geometry, or in use."""


def block_file_name(index: int) -> str:
    return f"blocks-{index:03d}.bin"


@dataclass(frozen=True)
class _Geometry:
    stride: int
    num_blocks: int
    num_files: int
    num_dirs: int

    def files_in_dir(self, dir_index: int) -> list[int]:
        return list(range(dir_index, self.num_files, self.num_dirs))

    def blocks_in_file(self, index: int) -> int:
        return -(-(self.num_blocks - index) // self.num_files) if index < self.num_blocks else 0

    def marker(self, dir_index: int) -> dict[str, object]:
        return {
            "format": "flexkv-twin-ssd",
            "version": FORMAT_VERSION,
            "stride": self.stride,
            "num_blocks": self.num_blocks,
            "num_files": self.num_files,
            "num_dirs": self.num_dirs,
            "dir_index": dir_index,
            "files": [block_file_name(i) for i in self.files_in_dir(dir_index)],
        }

    def describe(self, dir_index: int) -> str:
        return (
            f"stride {self.stride}, {self.num_blocks} blocks in {self.num_files} files, "
            f"directory {dir_index + 1} of {self.num_dirs}"
        )


def _plan(ndirs: int, num_blocks: int, stride: int, max_file_size: int | None) -> _Geometry:
    if ndirs < 1:
        raise SsdFilesError("ssd_cache_dir: need at least one directory")
    if num_blocks < 1:
        raise SsdFilesError(f"num_blocks must be >= 1, got {num_blocks}")
    if stride < ALIGN or stride % ALIGN:
        raise SsdFilesError(f"stride must be a positive multiple of {ALIGN}, got {stride}")
    if max_file_size is not None and 0 < max_file_size < stride:
        raise SsdFilesError(
            f"max_file_size {max_file_size} is smaller than one block ({stride} bytes)"
        )
    return _Geometry(stride, num_blocks, num_files(ndirs, num_blocks, stride, max_file_size), ndirs)


def mount_info(path: str | os.PathLike[str]) -> tuple[str, str, str] | None:
    """``(mount point, source device, filesystem type)`` of the filesystem holding ``path``
    or, if it does not exist yet, its nearest existing parent; None where
    /proc/self/mounts cannot be read."""
    target = Path(path).absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    where = str(target.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best: tuple[str, str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = where == mount or where.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= len(best[0])):
            best = (mount, fields[0], fields[2])
    return best


def filesystem_type(path: str | os.PathLike[str]) -> str | None:
    """The type (``ext4``, ``tmpfs``, ...) of the filesystem holding ``path``."""
    info = mount_info(path)
    return info[2] if info else None


class SsdFiles:
    """Open block files of the SSD tier. Build with :meth:`create`."""

    def __init__(
        self,
        dirs: tuple[str, ...],
        geometry: _Geometry,
        fds: tuple[int, ...],
        paths: tuple[str, ...],
        direct: bool,
        lock_fds: tuple[int, ...],
        reopened: bool = False,
        found_sizes: tuple[int, ...] = (),
    ) -> None:
        self.dirs = dirs
        self._geometry = geometry
        self.fds = fds
        self.paths = paths
        self.direct = direct  # every file opened with O_DIRECT
        self._lock_fds = lock_fds
        self.closed = False
        # Every directory carried our marker with this geometry: the blocks are a cache
        # written before (a restart). found_sizes[i]: bytes file i had when opened (0 when
        # it was missing); blocks beyond it hold nothing.
        self.reopened = reopened
        self.found_sizes = found_sizes or (0,) * len(fds)

    @property
    def stride(self) -> int:
        return self._geometry.stride

    @property
    def num_blocks(self) -> int:
        return self._geometry.num_blocks

    @property
    def nfiles(self) -> int:
        return self._geometry.num_files

    @property
    def slot_table_path(self) -> str:
        return str(Path(self.dirs[0]) / SLOT_TABLE)

    def locate(self, block: int) -> tuple[int, int]:
        """``(file index, byte offset)`` of SSD block ``block``."""
        if not 0 <= block < self.num_blocks:
            raise IndexError(f"ssd id {block} out of range [0, {self.num_blocks})")
        return block % self.nfiles, (block // self.nfiles) * self.stride

    @classmethod
    def create(
        cls,
        dirs: Sequence[str | os.PathLike[str]],
        num_blocks: int,
        stride: int,
        *,
        max_file_size: int | None,
    ) -> SsdFiles:
        """Create, or reopen with the same geometry, the block files over ``dirs``.

        ``max_file_size`` (bytes; None or <= 0: unlimited) bounds each file. Directories
        are created if missing. Raises :class:`SsdFilesError` for a directory holding
        files of others, a different geometry, or one in use by another process.
        """
        if isinstance(dirs, (str, os.PathLike)):
            dirs = [dirs]
        resolved = tuple(str(Path(d).absolute()) for d in dirs)
        real = [os.path.realpath(d) for d in resolved]
        for i, r in enumerate(real):
            if r in real[:i]:
                raise SsdFilesError(f"ssd_cache_dir lists {resolved[i]} twice")
        geometry = _plan(len(resolved), num_blocks, stride, max_file_size)
        # Check every directory before touching any, so a refusal leaves no trace.
        marked = [_check_directory(Path(d), geometry, index) for index, d in enumerate(resolved)]
        return cls._open(resolved, geometry, reopened=all(marked))

    @classmethod
    def _open(cls, dirs: tuple[str, ...], geometry: _Geometry, *, reopened: bool) -> SsdFiles:
        fds: list[int] = []
        lock_fds: list[int] = []
        paths = [""] * geometry.num_files
        found = [0] * geometry.num_files
        direct = True
        try:
            for index, d in enumerate(dirs):
                Path(d).mkdir(parents=True, exist_ok=True)
                lock_fds.append(_write_marker(Path(d), geometry, index))
            for i in range(geometry.num_files):
                path = str(Path(dirs[i % len(dirs)]) / block_file_name(i))
                found[i] = os.stat(path).st_size if reopened and os.path.exists(path) else 0
                fd, is_direct = _open_block_file(path)
                fds.append(fd)
                paths[i] = path
                direct = direct and is_direct
                _preallocate(fd, path, geometry.blocks_in_file(i) * geometry.stride)
        except BaseException:
            for fd in fds + lock_fds:
                os.close(fd)
            raise
        return cls(
            dirs,
            geometry,
            tuple(fds),
            tuple(paths),
            direct,
            tuple(lock_fds),
            reopened,
            tuple(found),
        )

    def close(self) -> None:
        """Close the files and release the directories. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for fd in self.fds + self._lock_fds:
            os.close(fd)

    def remove(self) -> None:
        """Close, then delete the block files and the markers (the directories stay)."""
        self.close()
        for path in (*self.paths, self.slot_table_path):
            Path(path).unlink(missing_ok=True)
        for d in self.dirs:
            (Path(d) / MARKER).unlink(missing_ok=True)

    def __enter__(self) -> SsdFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SsdFiles({len(self.dirs)} dirs, {self.num_blocks} blocks x {self.stride} B, "
            f"{self.nfiles} files, direct={self.direct})"
        )


def _check_directory(d: Path, geometry: _Geometry, index: int) -> bool:
    """Refuse ``d`` unless it is new, empty or ours with this geometry; True if ours."""
    if not d.exists():
        return False
    if not d.is_dir():
        raise SsdFilesError(f"ssd_cache_dir {d} exists and is not a directory")
    entries = sorted(p.name for p in d.iterdir())
    if MARKER not in entries:
        if entries:
            raise SsdFilesError(
                f"refusing to use {d} as an SSD cache directory: it holds files that "
                f"FlexKV Twin did not create (e.g. {entries[0]!r}); give an empty or new "
                f"directory"
            )
        return False
    try:
        marker = json.loads((d / MARKER).read_text())
        theirs = _Geometry(
            int(marker["stride"]),
            int(marker["num_blocks"]),
            int(marker["num_files"]),
            int(marker["num_dirs"]),
        )
        their_index = int(marker["dir_index"])
        version = int(marker["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SsdFilesError(f"{d / MARKER}: unreadable marker ({exc})") from exc
    if version != FORMAT_VERSION:
        raise SsdFilesError(
            f"{d / MARKER}: format version {version}; this build reads {FORMAT_VERSION}"
        )
    if theirs != geometry or their_index != index:
        raise SsdFilesError(
            f"{d} holds an SSD cache of another geometry ({theirs.describe(their_index)}); "
            f"asked for {geometry.describe(index)}. Remove its files or use another directory"
        )
    ours = {MARKER, *(block_file_name(i) for i in geometry.files_in_dir(index))}
    if index == 0:
        ours.add(SLOT_TABLE)
    strangers = [name for name in entries if name not in ours]
    if strangers:
        raise SsdFilesError(
            f"refusing to use {d} as an SSD cache directory: besides its block files it "
            f"holds files that FlexKV Twin did not create (e.g. {strangers[0]!r})"
        )
    return True


def _write_marker(d: Path, geometry: _Geometry, index: int) -> int:
    """Write (or rewrite, same content) the marker; return its fd, held under flock."""
    path = d / MARKER
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SsdFilesError(f"{d} is in use by another process (flock on {path})") from None
    data = (json.dumps(geometry.marker(index), indent=1) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    return fd


def _open_block_file(path: str) -> tuple[int, bool]:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags | _O_DIRECT, 0o644), bool(_O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    log.warning(
        "O_DIRECT refused for %s (filesystem %s); using buffered I/O: reads may be served "
        "from the page cache",
        path,
        filesystem_type(path),
    )
    return os.open(path, flags, 0o644), False


def _preallocate(fd: int, path: str, size: int) -> None:
    if os.fstat(fd).st_size >= size:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
            raise
        log.warning(
            "posix_fallocate refused for %s (%s); sized with ftruncate instead: the space "
            "is not reserved, so the disk may fill up later",
            path,
            exc.strerror,
        )
        os.ftruncate(fd, size)
