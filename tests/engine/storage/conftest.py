"""Fixtures of the SSD tier tests: directories on a real disk, an aligned host pool, and a
factory that opens either backend (the io_uring one skips where io_uring is absent)."""

from __future__ import annotations

import mmap
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from flexkv_engine.storage import (
    SsdBackend,
    SsdCompletion,
    SsdFiles,
    ThreadSsdBackend,
    UringSsdBackend,
    filesystem_type,
)

BACKENDS = [pytest.param("io_uring", marks=pytest.mark.io_uring), "threads"]


class HostPool:
    """A page-aligned block-first host buffer (an anonymous mmap) seen as numpy rows."""

    def __init__(self, num_blocks: int, stride: int) -> None:
        self.num_blocks = num_blocks
        self.stride = stride
        self._mm = mmap.mmap(-1, num_blocks * stride)
        self.array = np.frombuffer(self._mm, dtype=np.uint8).reshape(num_blocks, stride)
        self.ptr = self.array.ctypes.data
        assert self.ptr % 4096 == 0

    @property
    def base_ptr(self) -> int:  # the HostBuffer protocol of storage.ssd_io
        return self.ptr

    def poison(self, value: int = 0xA5) -> None:
        self.array[:] = value


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on a disk filesystem (O_DIRECT works there, unlike old tmpfs)."""
    if filesystem_type(tmp_path) not in {"tmpfs", "ramfs"}:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="flexkv-ssd-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_backend(
    kind: str, files: SsdFiles, pool: HostPool, queue_depth: int = 8, **kwargs: object
) -> SsdBackend:
    args = (files, pool.ptr, pool.stride, pool.num_blocks)
    if kind == "io_uring":
        return UringSsdBackend(*args, queue_depth=queue_depth, **kwargs)  # type: ignore[arg-type]
    return ThreadSsdBackend(*args, num_threads=min(queue_depth, 32), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., SsdBackend]]:
    """``make(kind, files, pool, queue_depth=8, **kw)``; every backend made is closed."""
    made: list[SsdBackend] = []

    def make(*args: object, **kwargs: object) -> SsdBackend:
        backend = make_backend(*args, **kwargs)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def wait_all(
    backend: SsdBackend, job_ids: Sequence[int], timeout: float = 60.0
) -> dict[int, SsdCompletion]:
    """Poll until every job in ``job_ids`` finished; fail on a stray or repeated job."""
    wanted = set(job_ids)
    done: dict[int, SsdCompletion] = {}
    deadline = time.monotonic() + timeout
    while wanted - done.keys():
        left = deadline - time.monotonic()
        assert left > 0, f"jobs not finished: {sorted(wanted - done.keys())}"
        for completion in backend.poll(timeout=min(left, 1.0)):
            assert completion.job_id in wanted, completion
            assert completion.job_id not in done, completion
            done[completion.job_id] = completion
    return done


def run_job(
    backend: SsdBackend,
    job_id: int,
    write: bool,
    ssd_ids: Sequence[int],
    host_ids: Sequence[int],
) -> SsdCompletion:
    backend.submit(job_id, write, ssd_ids, host_ids)
    return wait_all(backend, [job_id])[job_id]
