"""The ``SsdBackend`` contract, run over both backends (io_uring skips where absent)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flexkv_engine.storage import (
    SsdBackend,
    SsdFiles,
    ThreadSsdBackend,
    UringSsdBackend,
    open_ssd_backend,
    ssd_io,
)

from .conftest import BACKENDS, HostPool, run_job, wait_all

STRIDE = 16384
Factory = Callable[..., SsdBackend]


def _files(root: Path, num_blocks: int = 60, ndirs: int = 3, per_file: int | None = 10) -> SsdFiles:
    dirs = [root / f"ssd{i}" for i in range(ndirs)]
    max_size = None if per_file is None else per_file * STRIDE
    return SsdFiles.create(dirs, num_blocks, STRIDE, max_file_size=max_size)


def _on_disk(files: SsdFiles, block: int) -> bytes:
    """The block's bytes read through the page cache, by the layout rule alone."""
    index, offset = files.locate(block)
    with open(files.paths[index], "rb") as f:
        f.seek(offset)
        return f.read(files.stride)


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("queue_depth", [1, 64])
def test_roundtrip_over_three_directories(
    disk_dir: Path, backend_factory: Factory, kind: str, queue_depth: int
) -> None:
    rng = np.random.default_rng(queue_depth)
    files = _files(disk_dir)
    assert files.nfiles == 6 and files.direct
    pool = HostPool(32, STRIDE)
    pool.array[:] = rng.integers(0, 256, pool.array.shape, dtype=np.uint8)
    original = pool.array.copy()
    backend = backend_factory(kind, files, pool, queue_depth)
    assert backend.name == kind

    ssd_ids = rng.choice(files.num_blocks, size=32, replace=False)
    done = run_job(backend, 1, True, ssd_ids.tolist(), list(range(32)))
    assert done.ok and done.error is None and done.bytes == 32 * STRIDE
    assert done.queue_s >= 0 and done.transfer_s >= 0
    for slot, block in enumerate(ssd_ids):
        assert _on_disk(files, int(block)) == original[slot].tobytes()

    pool.poison()
    order = rng.permutation(32)  # read block ssd_ids[k] into slot order[k]
    done = run_job(backend, 2, False, ssd_ids.tolist(), order.tolist())
    assert done.ok and done.bytes == 32 * STRIDE
    for k, slot in enumerate(order):
        assert np.array_equal(pool.array[slot], original[k]), (k, slot)


@pytest.mark.parametrize("kind", BACKENDS)
def test_adjacent_blocks_merge_and_still_land_right(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir, num_blocks=64, ndirs=1, per_file=None)  # one file: ids adjacent
    pool = HostPool(64, STRIDE)
    pool.array[:] = np.arange(64, dtype=np.uint8)[:, None] + 1
    backend = backend_factory(kind, files, pool, 4, max_io_bytes=4 * STRIDE)
    assert run_job(backend, 1, True, list(range(64)), list(range(64))).ok
    pool.poison(0)
    ids = [*range(10, 30), *range(40, 44)]
    assert run_job(backend, 2, False, ids, ids).ok
    for b in range(64):
        assert pool.array[b, 0] == (b + 1 if b in ids else 0), b
        assert _on_disk(files, b) == bytes([b + 1]) * STRIDE


@pytest.mark.parametrize("kind", BACKENDS)
def test_many_jobs_from_several_threads(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir, num_blocks=240, per_file=40)
    sources, nthreads = 64, 4
    pool = HostPool(sources + files.num_blocks, STRIDE)  # block b reads back into 64 + b
    rng = np.random.default_rng(5)
    pool.array[:sources] = rng.integers(0, 256, (sources, STRIDE), dtype=np.uint8)
    backend = backend_factory(kind, files, pool, 16)
    source_of: dict[int, int] = {}
    plans: list[list[tuple[int, list[int], list[int]]]] = []
    for t in range(nthreads):  # each thread writes its own 60 blocks once, 4 per job
        blocks = rng.permutation(np.arange(t * 60, (t + 1) * 60)).tolist()
        plan = []
        for j in range(15):
            ssd = blocks[4 * j : 4 * j + 4]
            host = rng.choice(sources, size=4, replace=False).tolist()
            source_of.update(zip(ssd, host, strict=True))
            plan.append((t * 100 + j, ssd, host))
        plans.append(plan)
    errors: list[BaseException] = []

    def submitter(plan: list[tuple[int, list[int], list[int]]], write: bool) -> None:
        try:
            for job_id, ssd, host in plan:
                if write:
                    backend.submit(job_id, True, ssd, host)
                else:
                    backend.submit(job_id + 10_000, False, ssd, [sources + s for s in ssd])
        except BaseException as exc:
            errors.append(exc)

    for write in (True, False):
        threads = [threading.Thread(target=submitter, args=(p, write)) for p in plans]
        for thread in threads:
            thread.start()
        # One poller collects the jobs of every thread while they are still submitting.
        ids = [job_id + (0 if write else 10_000) for plan in plans for job_id, _, _ in plan]
        results = wait_all(backend, ids)
        for thread in threads:
            thread.join()
        assert not errors
        assert all(r.ok and r.bytes == 4 * STRIDE for r in results.values())
    for block, source in source_of.items():
        assert np.array_equal(pool.array[sources + block], pool.array[source]), block


@pytest.mark.parametrize("kind", BACKENDS)
def test_bad_ids_raise_and_queue_nothing(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir)
    pool = HostPool(8, STRIDE)
    backend = backend_factory(kind, files, pool)
    with pytest.raises(IndexError, match="ssd id 60 out of range"):
        backend.submit(1, False, [0, 60], [0, 1])
    with pytest.raises(IndexError, match="ssd id -1 out of range"):
        backend.submit(1, True, [-1], [0])
    with pytest.raises(IndexError, match="host id 8 out of range"):
        backend.submit(1, False, [3], [8])
    with pytest.raises(ValueError, match="differ in length"):
        backend.submit(1, False, [1, 2], [1])
    assert backend.poll(timeout=0.05) == []
    # numpy arrays and ranges are accepted as id lists
    assert run_job(backend, 1, True, np.arange(4), range(4)).ok


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_job_id_in_flight_cannot_be_reused(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir, num_blocks=600, per_file=None)
    pool = HostPool(600, STRIDE)
    backend = backend_factory(kind, files, pool, 1)
    backend.submit(7, True, list(range(600)), list(range(600)))
    with pytest.raises(ValueError, match="job id 7 is already in flight"):
        backend.submit(7, False, [0], [0])
    assert wait_all(backend, [7])[7].ok
    assert run_job(backend, 7, False, [0], [0]).ok  # free again once returned


@pytest.mark.parametrize("kind", BACKENDS)
def test_truncated_file_reports_path_and_offset(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir, num_blocks=12, ndirs=2, per_file=None)  # 2 files, 6 blocks each
    pool = HostPool(12, STRIDE)
    backend = backend_factory(kind, files, pool, 4)
    assert run_job(backend, 1, True, list(range(12)), list(range(12))).ok

    os.truncate(files.paths[1], 0)  # blocks 1, 3, 5, ... are gone
    done = run_job(backend, 2, False, [3], [0])
    assert not done.ok
    assert done.error == (
        f"read {files.paths[1]} offset {STRIDE}: unexpected end of file (got 0 of {STRIDE} bytes)"
    )

    os.truncate(files.paths[0], 2 * STRIDE + 8192)  # block 4 (offset 2*STRIDE) half there
    done = run_job(backend, 3, False, [4], [0])
    assert not done.ok and done.bytes == 8192
    assert done.error is not None
    assert done.error.startswith(f"read {files.paths[0]} offset {2 * STRIDE + 8192}: ")
    assert "unexpected end of file (got 8192 of 16384 bytes)" in done.error

    assert run_job(backend, 4, False, [0, 2], [0, 1]).ok  # the backend carries on


@pytest.mark.parametrize("kind", BACKENDS)
def test_errno_failures_name_op_path_offset_and_errno(
    disk_dir: Path, backend_factory: Factory, kind: str
) -> None:
    files = _files(disk_dir, num_blocks=4, ndirs=1, per_file=None)
    read_only = os.open(files.paths[0], os.O_RDONLY)
    os.dup2(read_only, files.fds[0])  # same fd number, now read-only: writes fail EBADF
    os.close(read_only)
    pool = HostPool(4, STRIDE)
    backend = backend_factory(kind, files, pool)
    done = run_job(backend, 1, True, [2], [0])
    assert not done.ok and done.bytes == 0
    assert done.error == (
        f"write {files.paths[0]} offset {2 * STRIDE}: Bad file descriptor (errno 9)"
    )
    assert run_job(backend, 2, False, [2], [0]).ok


@pytest.mark.parametrize("kind", BACKENDS)
def test_empty_job_and_close_semantics(disk_dir: Path, backend_factory: Factory, kind: str) -> None:
    files = _files(disk_dir)
    pool = HostPool(16, STRIDE)
    backend = backend_factory(kind, files, pool, 2)
    done = run_job(backend, 5, False, [], [])
    assert done.ok and done.bytes == 0
    backend.submit(6, True, list(range(16)), list(range(16)))
    backend.close()  # waits for job 6
    (last,) = backend.poll(timeout=0)
    assert last.job_id == 6 and last.ok and last.bytes == 16 * STRIDE
    assert backend.poll(timeout=None) == []  # closed and empty: no wait
    with pytest.raises(RuntimeError, match="closed"):
        backend.submit(7, False, [0], [0])
    backend.close()


@pytest.mark.faults
@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("fault", ["inject_short", "inject_eagain"])
def test_short_io_and_eagain_are_resumed(
    disk_dir: Path, backend_factory: Factory, kind: str, fault: str
) -> None:
    files = _files(disk_dir)
    pool = HostPool(16, STRIDE)
    rng = np.random.default_rng(11)
    pool.array[:] = rng.integers(0, 256, pool.array.shape, dtype=np.uint8)
    original = pool.array.copy()
    backend = backend_factory(kind, files, pool, 4, **{fault: True})
    ssd = rng.choice(files.num_blocks, size=16, replace=False).tolist()
    assert run_job(backend, 1, True, ssd, list(range(16))).ok
    pool.poison()
    done = run_job(backend, 2, False, ssd, list(range(16)))
    assert done.ok and done.bytes == 16 * STRIDE
    assert np.array_equal(pool.array, original)


@pytest.mark.io_uring
def test_backends_agree_byte_for_byte(disk_dir: Path, backend_factory: Factory) -> None:
    """The same random job sequence through both backends leaves the same bytes."""
    rng = np.random.default_rng(2024)
    seed = rng.integers(0, 256, (24, STRIDE), dtype=np.uint8)
    jobs = []
    for j in range(40):
        n = int(rng.integers(1, 9))
        write = bool(rng.random() < 0.6)
        ssd = rng.choice(90, size=n, replace=False).tolist()
        host = rng.choice(24, size=n, replace=False).tolist()
        jobs.append((j, write, ssd, host))
    outcomes = {}
    for kind in ("io_uring", "threads"):
        files = SsdFiles.create(
            [disk_dir / kind / "a", disk_dir / kind / "b"], 90, STRIDE, max_file_size=20 * STRIDE
        )
        pool = HostPool(24, STRIDE)
        pool.array[:] = seed
        backend = backend_factory(kind, files, pool, 8)
        for job_id, write, ssd, host in jobs:  # one at a time: the order is the contract
            assert run_job(backend, job_id, write, ssd, host).ok
        backend.close()
        disk = b"".join(_on_disk(files, b) for b in range(90))
        outcomes[kind] = (pool.array.tobytes(), disk)
    assert outcomes["io_uring"] == outcomes["threads"]


# ---- choosing a backend ---------------------------------------------------------------------


def test_open_prefers_threads_when_asked_or_depth_is_zero(disk_dir: Path) -> None:
    files = _files(disk_dir)
    pool = HostPool(4, STRIDE)
    for kwargs in ({"queue_depth": 0}, {"queue_depth": 32, "prefer": "threads"}):
        backend = open_ssd_backend(files, pool.ptr, STRIDE, 4, **kwargs)  # type: ignore[arg-type]
        assert isinstance(backend, ThreadSsdBackend) and backend.name == "threads"
        backend.close()
    with pytest.raises(ValueError, match="unknown ssd backend 'uring'; choose from"):
        open_ssd_backend(files, pool.ptr, STRIDE, 4, queue_depth=8, prefer="uring")
    with pytest.raises(ValueError, match="aligned"):
        open_ssd_backend(files, pool.ptr + 512, STRIDE, 4, queue_depth=8, prefer="threads")


@pytest.mark.io_uring
def test_open_picks_io_uring_when_it_works(disk_dir: Path) -> None:
    files = _files(disk_dir)
    pool = HostPool(4, STRIDE)
    backend = open_ssd_backend(files, pool.ptr, STRIDE, 4, queue_depth=32)
    assert isinstance(backend, UringSsdBackend) and backend.name == "io_uring"
    assert "flags=" in backend.features
    backend.close()


def test_open_without_io_uring(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ssd_io, "io_uring_unavailable_reason", lambda: "kernel says no")
    files = _files(disk_dir)
    pool = HostPool(4, STRIDE)
    with pytest.raises(RuntimeError, match="cannot run here: kernel says no"):
        open_ssd_backend(files, pool.ptr, STRIDE, 4, queue_depth=32, prefer="io_uring")
    backend = open_ssd_backend(files, pool.ptr, STRIDE, 4, queue_depth=32)
    assert backend.name == "threads"
    assert "kernel says no" in caplog.text
    backend.close()


@pytest.mark.parametrize("prefer", BACKENDS)
def test_open_accepts_a_host_pool_object(disk_dir: Path, prefer: str) -> None:
    files = _files(disk_dir)
    pool = HostPool(4, STRIDE)
    pool.array[:] = 7
    backend = open_ssd_backend(files, pool, queue_depth=4, prefer=prefer)
    assert backend.name == prefer
    assert run_job(backend, 1, True, [5, 6], [0, 1]).ok
    pool.poison()
    assert run_job(backend, 2, False, [5, 6], [2, 3]).ok
    assert (pool.array[2:] == 7).all()
    backend.close()
    with pytest.raises(ValueError, match="contradict"):
        open_ssd_backend(files, pool, 2 * STRIDE, queue_depth=4, prefer="threads")


def test_the_core_merge_rule_counts_the_ios_the_backend_plans(disk_dir: Path) -> None:
    """``core.ssd_ios.count_ios`` (what the engine traces and the twin charges) agrees
    with the backend's own I/O plan, over several files and the merge limit."""
    import random

    from flexkv_engine.core.ssd_ios import blocks_per_io, count_ios
    from flexkv_engine.storage.ssd_io import plan_ios

    stride = 8192
    rng = random.Random(5)
    for dirs, max_file in ((1, None), (3, None), (2, 100 * stride)):
        paths = [str(disk_dir / f"{dirs}-{i}") for i in range(dirs)]
        with SsdFiles.create(paths, 600, stride, max_file_size=max_file) as files:
            assert files.nfiles == (dirs if max_file is None else 6)
            step = files.nfiles
            for max_io in (stride, 4 * stride, 1 << 20):
                for _ in range(100):
                    n = rng.randint(1, 30)
                    s0, h0 = rng.randint(0, 300), rng.randint(0, 300)
                    ssd = [(s0 + i * rng.choice((step, step, 1))) % 600 for i in range(n)]
                    host = [h0 + i if rng.random() < 0.85 else rng.randint(0, 599)
                            for i in range(n)]
                    planned = plan_ios(files, stride, 600, ssd, host, max_io)
                    counted = count_ios(ssd, host, files.nfiles, blocks_per_io(stride, max_io))
                    assert counted == len(planned)
