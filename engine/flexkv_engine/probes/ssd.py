"""SSD tier benchmark: our backend against fio on the same file, op size and queue depth.

The file is written once first, untimed: a first write into preallocated extents also
converts them and is slower, and fio's write pass overwrites, so ours must too (that
pass is reported as ``first_write_gbps``). Then each round writes the whole file in
``io_size`` ops through our backend (timed), reads it all back (O_DIRECT: from the
device, never the page cache; the bytes are checked), and runs fio's io_uring engine on
the same file (``--rw=read``, then ``--rw=write``, ``--direct=1``, same ``--bs`` and
``--iodepth``). Host memory is ``queue_depth`` ops' worth of slots, shared with fio where
possible (see :class:`_HostBuffer`). With ``repeat`` > 1 each figure is the median over
the rounds; the rounds also list device requests per op (/proc/diskstats). GB/s means
1e9 bytes per second. The bench file lives in a fresh subdirectory of ``directory``,
removed afterwards; a memory filesystem (tmpfs) is refused.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..storage.ssd_files import SsdFiles, filesystem_type, mount_info
from ..storage.ssd_io import open_ssd_backend

DEFAULT_DIR = "/var/tmp/flexkv-bench"
DEFAULT_SIZE = 4 * 2**30
DEFAULT_IO_SIZE = 2 * 2**20
DEFAULT_QUEUE_DEPTH = 32
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs"})
_JOB_BLOCKS = 64  # blocks per job: many jobs in flight, as the KV manager submits them


class SsdBenchError(ValueError):
    """The bench cannot run as asked (a memory filesystem, a size smaller than one op)."""


def run_ssd_bench(
    directory: str | os.PathLike[str] = DEFAULT_DIR,
    *,
    size: int = DEFAULT_SIZE,
    io_size: int = DEFAULT_IO_SIZE,
    queue_depth: int = DEFAULT_QUEUE_DEPTH,
    backend: str = "auto",
    repeat: int = 1,
    fio: str | None = "fio",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bench and return its figures (see the module docstring); ``fio=None``
    skips fio, a name not on PATH sets the fio figures to None with a note."""
    say = progress or (lambda _msg: None)
    if io_size < 4096 or io_size % 4096:
        raise SsdBenchError(f"--io-size must be a multiple of 4096, got {io_size}")
    num_blocks = size // io_size
    if num_blocks < 1:
        raise SsdBenchError(f"--size {size} is smaller than one op of {io_size} bytes")
    mount = mount_info(directory)
    if mount is not None and mount[2] in MEMORY_FILESYSTEMS:
        raise SsdBenchError(
            f"{directory} is on {mount[2]} (memory, not a disk): give --dir on the SSD to test"
        )
    fio_path = shutil.which(fio) if fio else None
    result: dict[str, Any] = {
        "dir": str(directory),
        "mount": mount[0] if mount else None,
        "device": mount[1] if mount else None,
        "filesystem": mount[2] if mount else None,
        "size": num_blocks * io_size,
        "io_size": io_size,
        "queue_depth": queue_depth,
        "repeat": repeat,
        "cpus": os.cpu_count(),
    }
    workdir = Path(directory) / f"run-{os.getpid()}-{time.monotonic_ns()}"
    files = SsdFiles.create([workdir], num_blocks, io_size, max_file_size=None)
    try:
        rounds = _run_rounds(files, queue_depth, backend, repeat, fio_path, say)
    finally:
        files.remove()
        workdir.rmdir()
    result.update(rounds)
    if fio_path is None:
        result["note"] = (
            "fio skipped" if not fio else f"fio not found on PATH ({fio}): no fio figures"
        )
    for op in ("read", "write"):
        ours, theirs = result[f"{op}_gbps"], result[f"fio_{op}_gbps"]
        result[f"{op}_ratio_to_fio"] = round(ours / theirs, 3) if ours and theirs else None
    return result


class _HostBuffer:
    """The bench's host slots: ``queue_depth`` ops' worth, like fio's own buffers.

    Where /dev/shm is a tmpfs, the slots are a MAP_SHARED mapping of a file there, and
    fio gets the same file (``--mem=mmapshared:FILE``): both sides then DMA into the same
    physical pages. That matters: a 2 MiB O_DIRECT op becomes one to four device requests
    depending on how contiguous its pages happen to be, and on a virtio disk the request
    count moves throughput by 30% or more. Elsewhere the slots are anonymous memory.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.path: str | None = None
        shm = Path("/dev/shm")
        if filesystem_type(shm) == "tmpfs" and os.access(shm, os.W_OK):
            fd, self.path = tempfile.mkstemp(prefix="flexkv-bench-", suffix=".buf", dir=shm)
            try:
                os.ftruncate(fd, size)
                self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
            finally:
                os.close(fd)
        else:
            self.map = mmap.mmap(-1, size)
        self.view = memoryview(self.map)
        self.address = _address_of(self.map)

    def keep_size(self) -> None:
        """Undo a resize of the shared file by fio (a shorter file would fault our map)."""
        if self.path is not None and os.path.getsize(self.path) < self.size:
            os.truncate(self.path, self.size)

    def close(self) -> None:
        self.view.release()
        self.map.close()
        if self.path is not None:
            os.unlink(self.path)


def _run_rounds(
    files: SsdFiles,
    queue_depth: int,
    prefer: str,
    repeat: int,
    fio_path: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    io_size, num_blocks = files.stride, files.num_blocks
    slots = min(num_blocks, queue_depth)
    host = _HostBuffer(slots * io_size)
    pattern = os.urandom(io_size)
    expected = b"".join(pattern[i:] + pattern[:i] for i in range(slots))  # distinct slots
    disk = _DiskCounters(files.paths[0])
    fio = _Fio(fio_path, files, queue_depth, host.path)
    io = open_ssd_backend(
        files,
        host.address,
        io_size,
        slots,
        queue_depth=queue_depth,
        prefer=prefer,
        max_io_bytes=io_size,
    )
    runs: list[dict[str, float | None]] = []
    try:
        # Precondition: the first write into preallocated (unwritten) extents also
        # converts them, and is slower; fio's write overwrites, so ours must too.
        say(f"precondition: writing {num_blocks} x {io_size} B with {io.name} (not counted)")
        host.view[:] = expected
        first_write_s = _transfer(io, True, num_blocks, slots)
        for r in range(repeat):
            run: dict[str, float | None] = {}
            say(f"round {r + 1}/{repeat}: writing {num_blocks} x {io_size} B with {io.name}")
            host.view[:] = expected  # fio's write pass left its own bytes in the slots
            with disk.count(run, "write", num_blocks):
                run["write_gbps"] = (
                    num_blocks * io_size / _transfer(io, True, num_blocks, slots) / 1e9
                )
            host.view[:] = bytes(len(host.view))  # poison: the read must refill every slot
            say(f"round {r + 1}/{repeat}: reading them back")
            with disk.count(run, "read", num_blocks):
                run["read_gbps"] = (
                    num_blocks * io_size / _transfer(io, False, num_blocks, slots) / 1e9
                )
            if host.view != expected:
                raise RuntimeError("bench read back other bytes than it wrote")
            for op in ("read", "write"):
                if fio.path is not None:
                    say(f"round {r + 1}/{repeat}: fio --rw={op}")
                with disk.count(run, f"fio_{op}", num_blocks):
                    run[f"fio_{op}_gbps"] = fio.run(op)
                host.keep_size()
            runs.append(run)
    finally:
        io.close()
        host.close()
    out: dict[str, Any] = {
        "backend": io.name,
        "features": getattr(io, "features", None),
        "host_memory": "shared with fio" if host.path else "anonymous",
        "verified": True,
        "fio_version": fio.version(),
        "first_write_gbps": round(num_blocks * io_size / first_write_s / 1e9, 3),
    }
    for key in ("write_gbps", "read_gbps", "fio_read_gbps", "fio_write_gbps"):
        values = [run[key] for run in runs if run.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["rounds"] = [{k: v if v is None else round(v, 3) for k, v in run.items()} for run in runs]
    return out


class _DiskCounters:
    """Device requests per op, from /proc/diskstats (None where the device is unknown)."""

    def __init__(self, path: str) -> None:
        mount = mount_info(path)
        source = os.path.realpath(mount[1]) if mount else ""
        self.name = os.path.basename(source) if source.startswith("/dev/") else None

    def _read(self) -> tuple[int, int] | None:
        if self.name is None:
            return None
        try:
            lines = Path("/proc/diskstats").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[2] == self.name:
                return int(fields[3]), int(fields[7])  # reads, writes completed
        return None

    @contextlib.contextmanager
    def count(self, run: dict[str, float | None], key: str, ops: int) -> Iterator[None]:
        before = self._read()
        yield
        after = self._read()
        if before is not None and after is not None:
            column = 0 if key.endswith("read") else 1
            run[f"{key}_requests_per_op"] = (after[column] - before[column]) / ops


def _address_of(buffer: mmap.mmap) -> int:
    import ctypes

    anchor = ctypes.c_char.from_buffer(buffer)
    address = ctypes.addressof(anchor)
    del anchor  # releases the export, so the mmap can be closed later
    return address


def _transfer(io: Any, write: bool, num_blocks: int, slots: int) -> float:
    """Move every block once, all jobs submitted up front; the wall time in seconds."""
    start = time.perf_counter()
    jobs = 0
    for first in range(0, num_blocks, _JOB_BLOCKS):
        ids = range(first, min(first + _JOB_BLOCKS, num_blocks))
        io.submit(jobs, write, list(ids), [b % slots for b in ids])
        jobs += 1
    finished = 0
    while finished < jobs:
        for done in io.poll(timeout=None):
            if not done.ok:
                raise RuntimeError(f"bench job failed: {done.error}")
            finished += 1
    return time.perf_counter() - start


class _Fio:
    """fio's io_uring engine on our bench file, with our op size and queue depth."""

    def __init__(
        self, path: str | None, files: SsdFiles, queue_depth: int, shared_buffer: str | None
    ) -> None:
        self.path = path
        self.command = [
            path or "fio",
            "--name=flexkv-bench",
            f"--filename={files.paths[0]}",
            "--ioengine=io_uring",
            "--direct=1",
            f"--bs={files.stride}",
            f"--iodepth={queue_depth}",
            f"--size={files.num_blocks * files.stride}",
            "--output-format=json",
        ]
        if shared_buffer is not None:
            self.command.append(f"--mem=mmapshared:{shared_buffer}")

    def run(self, op: str) -> float | None:
        """Bandwidth of one pass in GB/s; None without fio."""
        if self.path is None:
            return None
        command = [*self.command, f"--rw={op}"]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip()[-500:]}")
        report = json.loads(proc.stdout[proc.stdout.index("{") :])
        return float(report["jobs"][0][op]["bw_bytes"]) / 1e9

    def version(self) -> str | None:
        if self.path is None:
            return None
        proc = subprocess.run([self.path, "--version"], capture_output=True, text=True, check=False)
        return proc.stdout.strip() or None
