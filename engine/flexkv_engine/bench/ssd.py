"""SSD tier benchmark: our backend against fio on the same file, op size and queue depth.

The file is written once first, untimed (a first write into preallocated extents also
converts them and is slower; fio's write pass overwrites, so ours must too; that first
pass is reported as ``first_write_gbps``). One round: write the whole file in
``io_size`` blocks through our backend (timed), read
it all back (O_DIRECT, so from the device, never the page cache; the bytes are checked),
then run fio's io_uring engine on the same file (``--rw=read``, then ``--rw=write``,
``--direct=1``, same ``--bs`` and ``--iodepth``). With ``repeat`` > 1 the rounds repeat
and each figure is the median. Bandwidths are in GB/s (1e9 bytes). The bench file lives
in a fresh subdirectory of ``directory``, removed afterwards; tmpfs is refused.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..storage.ssd_files import SsdFiles, mount_info
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


def _run_rounds(
    files: SsdFiles,
    queue_depth: int,
    prefer: str,
    repeat: int,
    fio_path: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    io_size, num_blocks = files.stride, files.num_blocks
    slots = min(num_blocks, max(2 * queue_depth, 8))
    buffer = mmap.mmap(-1, slots * io_size)  # page-aligned, as O_DIRECT wants
    view = memoryview(buffer)
    base = _address_of(buffer)
    pattern = os.urandom(io_size)
    for i in range(slots):
        view[i * io_size : (i + 1) * io_size] = pattern[i:] + pattern[:i]  # distinct slots
    expected = bytes(view)
    io = open_ssd_backend(
        files, base, io_size, slots, queue_depth=queue_depth, prefer=prefer, max_io_bytes=io_size
    )
    runs: list[dict[str, float | None]] = []
    try:
        # Precondition: the first write into preallocated (unwritten) extents also
        # converts them, and is slower; fio's write overwrites, so ours must too.
        say(f"precondition: writing {num_blocks} x {io_size} B with {io.name} (not counted)")
        first_write_s = _transfer(io, True, num_blocks, slots)
        for r in range(repeat):
            say(f"round {r + 1}/{repeat}: writing {num_blocks} x {io_size} B with {io.name}")
            write_s = _transfer(io, True, num_blocks, slots)
            view[:] = bytes(len(view))  # poison: the read must refill every slot
            say(f"round {r + 1}/{repeat}: reading them back")
            read_s = _transfer(io, False, num_blocks, slots)
            if bytes(view) != expected:
                raise RuntimeError("bench read back other bytes than it wrote")
            run: dict[str, float | None] = {
                "write_gbps": num_blocks * io_size / write_s / 1e9,
                "read_gbps": num_blocks * io_size / read_s / 1e9,
            }
            for op in ("read", "write"):
                if fio_path is not None:
                    say(f"round {r + 1}/{repeat}: fio --rw={op}")
                run[f"fio_{op}_gbps"] = _fio(fio_path, files.paths[0], op, files, queue_depth)
            runs.append(run)
    finally:
        io.close()
        view.release()
        buffer.close()
    out: dict[str, Any] = {
        "backend": io.name,
        "features": getattr(io, "features", None),
        "verified": True,
        "fio_version": _fio_version(fio_path),
        "first_write_gbps": round(num_blocks * io_size / first_write_s / 1e9, 3),
    }
    for key in ("write_gbps", "read_gbps", "fio_read_gbps", "fio_write_gbps"):
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["rounds"] = [{k: v if v is None else round(v, 3) for k, v in run.items()} for run in runs]
    return out


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


def _fio(
    fio_path: str | None, path: str, op: str, files: SsdFiles, queue_depth: int
) -> float | None:
    if fio_path is None:
        return None
    command = [
        fio_path,
        "--name=flexkv-bench",
        f"--filename={path}",
        "--ioengine=io_uring",
        "--direct=1",
        f"--bs={files.stride}",
        f"--iodepth={queue_depth}",
        f"--rw={op}",
        f"--size={files.num_blocks * files.stride}",
        "--output-format=json",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip()[-500:]}")
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    return float(report["jobs"][0][op]["bw_bytes"]) / 1e9


def _fio_version(fio_path: str | None) -> str | None:
    if fio_path is None:
        return None
    proc = subprocess.run([fio_path, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None
