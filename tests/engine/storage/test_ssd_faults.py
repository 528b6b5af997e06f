"""SSD faults: injected I/O errors, short I/O that ends early, a full device, a block file
truncated or removed under the engine. The failing op fails cleanly (no block marked
ready, no lock left, a miss for a GET), the error is counted and logged once with its
path and offset, and the engine keeps serving with exact bytes."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from flexkv_engine.storage import SsdBackend, SsdFault, SsdFiles
from flexkv_engine.transfer import ssd as ssd_mover

from .conftest import BACKENDS, HostPool, run_job

torch = pytest.importorskip("torch")

from .ssd_engine import (  # noqa: E402
    assert_idle,
    disk_root,
    drop_cpu,
    get,
    inject,
    loaded_exactly,
    open_kv,
    put,
    untouched,
)

pytestmark = pytest.mark.faults
STRIDE = 16384
Factory = Callable[..., SsdBackend]


@pytest.fixture
def root() -> Iterator[Path]:
    yield from disk_root()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the backends ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize(
    ("op", "code"), [("read", errno.EIO), ("write", errno.EIO), ("write", errno.ENOSPC)]
)
def test_an_injected_error_fails_the_job_and_the_backend_goes_on(
    disk_dir: Path, backend_factory: Factory, kind: str, op: str, code: int
) -> None:
    files = SsdFiles.create([disk_dir / "a"], 32, STRIDE, max_file_size=None)
    pool = HostPool(8, STRIDE)
    rng = np.random.default_rng(code)
    pool.array[:] = rng.integers(0, 256, pool.array.shape, dtype=np.uint8)
    original = pool.array.copy()
    backend = backend_factory(kind, files, pool, 4)
    ssd = [3, 9, 10, 11, 20, 21, 22, 23]  # some blocks merge into one I/O
    assert run_job(backend, 1, True, ssd, list(range(8))).ok

    backend.inject_fault(SsdFault(op, code, count=1, skip=1))
    done = run_job(backend, 2, op == "write", ssd, list(range(8)))
    assert not done.ok and done.error is not None
    assert files.paths[0] in done.error and " offset " in done.error
    assert os.strerror(code) in done.error and f"errno {code}" in done.error
    assert done.error.startswith(op)

    # The fault is spent: the same job runs again, and the bytes are the right ones.
    assert run_job(backend, 3, True, ssd, list(range(8))).ok
    pool.poison()
    assert run_job(backend, 4, False, ssd, list(range(8))).ok
    assert np.array_equal(pool.array, original)


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("write", [False, True])
def test_a_short_io_that_stops_making_progress_is_an_error(
    disk_dir: Path, backend_factory: Factory, kind: str, write: bool
) -> None:
    files = SsdFiles.create([disk_dir / "a"], 16, STRIDE, max_file_size=None)
    pool = HostPool(4, STRIDE)
    backend = backend_factory(kind, files, pool, 2, inject_short=True)
    # One merged I/O of 4 blocks: the first completion moves half, the next moves nothing.
    backend.inject_fault(SsdFault("any", 0, count=1, skip=1))
    done = run_job(backend, 1, write, [4, 5, 6, 7], [0, 1, 2, 3])
    assert not done.ok and done.error is not None
    assert f"offset {4 * STRIDE + 2 * STRIDE}" in done.error  # where it stopped
    if write:
        assert "no progress" in done.error
    else:
        assert "unexpected end of file" in done.error
    assert done.bytes == 2 * STRIDE
    assert run_job(backend, 2, write, [4, 5, 6, 7], [0, 1, 2, 3]).ok  # short, resumed


# -- through the KV manager ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_failed_ssd_write_marks_nothing_ready_and_is_logged_once(
    root: Path, backend: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    keys = list(range(1000, 1006))
    slots = list(range(6))
    with open_kv([root / "a", root / "b"], backend) as kv:
        inject(kv, SsdFault("write", code, count=-1))
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="flexkv_engine"):
            result = put(kv, keys, slots)
        assert result.status == "failed" and len(result.errors) == 1
        assert os.strerror(code) in result.errors[0] and " offset " in result.errors[0]
        logged = _errors(caplog)
        assert len(logged) == 1 and result.errors[0] in logged[0]
        assert any(p in logged[0] for p in kv.ssd_files.paths)  # type: ignore[union-attr]
        assert kv.planner.tiers["ssd"].probe(keys) == (0, 0)  # nothing ready, nothing held
        assert kv.planner.tiers["ssd"].used == 0
        assert kv.planner.tiers["cpu"].probe(keys) == (6, 6)  # the CPU part is done
        stats = kv.stats()
        assert stats["ssd_errors"] == 1 and stats["ssd"]["writes_failed"] == 1
        assert_idle(kv)

        # The device works again: the engine stores and serves the same blocks.
        inject(kv, None)
        drop_cpu(kv)
        assert put(kv, keys, slots).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, list(range(10, 16)))
        assert result.status == "done" and result.hit_blocks["ssd"] == 6
        assert loaded_exactly(kv, keys, list(range(10, 16)), 6)
        assert kv.stats()["ssd_errors"] == 1
        assert_idle(kv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_ssd_read_is_a_miss_and_its_blocks_are_dropped(
    root: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = list(range(2000, 2008))
    slots = list(range(20, 28))
    with open_kv([root / "a"], backend) as kv:
        assert put(kv, keys, range(8)).status == "done"
        drop_cpu(kv)
        inject(kv, SsdFault("read", errno.EIO, count=1))
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="flexkv_engine"):
            result = get(kv, keys, slots)
        assert result.status == "failed" and result.loaded_blocks == 0
        assert result.hit_blocks["ssd"] == 0 and result.hit_blocks["cpu"] == 0
        assert untouched(kv, slots)  # no byte of the failed read reached the GPU
        logged = _errors(caplog)
        assert len(logged) == 1 and "read " in logged[0] and " offset " in logged[0]
        assert kv.planner.tiers["ssd"].probe(keys) == (0, 0)  # dropped: not retried
        assert kv.planner.tiers["cpu"].probe(keys) == (0, 0)  # nothing half-staged
        stats = kv.stats()
        assert stats["ssd_errors"] == 1 and stats["ssd"]["reads_failed"] == 1
        assert stats["ssd"]["dropped_blocks"] == 8
        assert_idle(kv)

        # Later GETs are plain misses; the next PUT stores the blocks again.
        result = get(kv, keys, slots)
        assert result.status == "done" and result.loaded_blocks == 0
        assert put(kv, keys, range(8)).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.status == "done" and result.hit_blocks["ssd"] == 8
        assert loaded_exactly(kv, keys, slots, 8)
        assert kv.stats()["ssd_errors"] == 1
        assert_idle(kv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cpu_part_of_a_get_is_served_when_its_ssd_part_fails(root: Path, backend: str) -> None:
    keys = list(range(3000, 3006))
    slots = list(range(20, 26))
    with open_kv([root / "a"], backend) as kv:
        assert put(kv, keys, range(6)).status == "done"
        with kv._lock:
            assert kv.planner.tiers["cpu"].evict(4) == 4  # the CPU keeps blocks 0..1
        inject(kv, SsdFault("read", errno.EIO, count=1))
        result = get(kv, keys, slots)
        assert result.status == "failed" and result.loaded_blocks == 2
        assert result.hit_blocks["cpu"] == 2 and result.hit_blocks["ssd"] == 0
        assert loaded_exactly(kv, keys, slots, 2) and untouched(kv, slots[2:])
        # Only what the failed read was loading is dropped from the SSD tier.
        assert kv.planner.tiers["ssd"].probe(keys) == (2, 2)
        assert kv.stats()["ssd"]["dropped_blocks"] == 4
        assert_idle(kv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_block_file_truncated_under_the_engine_is_a_counted_miss(
    root: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = list(range(4000, 4006))
    slots = list(range(20, 26))
    with open_kv([root / "a", root / "b"], backend) as kv:
        assert put(kv, keys, range(6)).status == "done"
        drop_cpu(kv)
        files = kv.ssd_files
        assert files is not None
        os.truncate(files.paths[1], 0)  # every block of file 1 is gone
        with caplog.at_level(logging.ERROR, logger="flexkv_engine"):
            result = get(kv, keys, slots)
        assert result.status == "failed" and result.loaded_blocks == 0
        assert untouched(kv, slots)
        logged = _errors(caplog)
        assert len(logged) == 1 and files.paths[1] in logged[0]
        assert "unexpected end of file" in logged[0]
        assert kv.stats()["ssd"]["reads_failed"] == 1
        assert_idle(kv)
        # The engine goes on: a PUT writes the blocks again (the file grows back).
        assert put(kv, keys, range(6)).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.hit_blocks["ssd"] == 6 and loaded_exactly(kv, keys, slots, 6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_block_file_removed_under_the_engine(root: Path, backend: str) -> None:
    keys = list(range(5000, 5008))
    slots = list(range(20, 28))
    dirs = [root / "a", root / "b"]
    with open_kv(dirs, backend) as kv:
        assert put(kv, keys, range(8)).status == "done"
        files = kv.ssd_files
        assert files is not None
        with kv._lock:
            _, _, handle = kv.planner.tiers["ssd"].lookup(keys, 0.0, hit=False)
            ids = kv.planner.tiers["ssd"].block_ids(handle, 0, 8)
            kv.planner.tiers["ssd"].release(handle)
        removed = files.locate(ids[3])[0]
        os.unlink(files.paths[removed])
        # The open file lives on until the engine closes it: it keeps serving exactly.
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.status == "done" and result.hit_blocks["ssd"] == 8
        assert loaded_exactly(kv, keys, slots, 8)
        assert_idle(kv)
    # After a restart, blocks of the removed file are gone (and so, the index being
    # prefix-closed, everything after the first of them); the others are restored.
    first_lost = next(i for i, b in enumerate(ids) if files.locate(b)[0] == removed)
    with open_kv(dirs, backend) as kv:
        assert kv.stats()["ssd"]["restored_blocks"] == first_lost
        result = get(kv, keys, slots)
        assert result.status == "done" and result.hit_blocks["ssd"] == first_lost
        assert loaded_exactly(kv, keys, slots, first_lost)
        assert untouched(kv, slots[first_lost:])
        assert kv.stats()["ssd"]["checksum_errors"] == 0
        assert_idle(kv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fault_in_one_piece_of_a_read_fails_the_op_and_drops_from_that_piece(
    root: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssd_mover, "PIECE_BYTES", 2 * 16384)  # reads in pieces of two blocks
    keys = list(range(6000, 6008))
    slots = list(range(20, 28))
    with open_kv([root / "a"], backend) as kv:
        assert put(kv, keys, range(8)).status == "done"
        drop_cpu(kv)
        inject(kv, SsdFault("read", errno.EIO, count=1, skip=2))  # the third piece to land
        result = get(kv, keys, slots)
        assert result.status == "failed" and len(result.errors) == 1
        assert untouched(kv, slots)
        assert kv.stats()["ssd_errors"] == 1
        # Dropped from the failed piece on (pieces may land in any order).
        kept = kv.planner.tiers["ssd"].probe(keys)[0]
        assert kept in (0, 2, 4, 6) and kv.stats()["ssd"]["dropped_blocks"] == 8 - kept
        assert_idle(kv)
        result = get(kv, keys, slots)  # what was kept is served
        assert result.status == "done" and result.hit_blocks["ssd"] == kept
        assert loaded_exactly(kv, keys, slots, kept) and untouched(kv, slots[kept:])
        assert put(kv, keys, range(8)).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.hit_blocks["ssd"] == 8 and loaded_exactly(kv, keys, slots, 8)
