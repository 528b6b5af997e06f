"""RemoteMover: remote jobs through submit/poll, failures as Done(ok=False), counters."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from flexkv_engine.core.paths import H2D, REMOTE_READ, REMOTE_WRITE
from flexkv_engine.storage.remote import RemoteStore, key_name
from flexkv_engine.storage.remote.fs import FsRemoteStore
from flexkv_engine.transfer.protocol import Done, Job
from flexkv_engine.transfer.remote import RemoteMover

from .conftest import STRIDE, StoreFactory, random_blocks, random_keys


class HostBuf:
    """A host pool for the mover: ``num_blocks`` slots of ``stride`` bytes (numpy)."""

    def __init__(self, num_blocks: int, stride: int = STRIDE) -> None:
        self.num_blocks, self.stride = num_blocks, stride
        self.array = np.zeros((num_blocks, stride), dtype=np.uint8)
        self.base_ptr = self.array.ctypes.data

    def fill(self, slot: int, data: bytes) -> None:
        self.array[slot] = np.frombuffer(data, dtype=np.uint8)

    def slot(self, slot: int) -> bytes:
        return self.array[slot].tobytes()


def run(mover: RemoteMover, *jobs: Job) -> dict[int, Done]:
    for job in jobs:
        mover.submit(job)
    done: dict[int, Done] = {}
    while len(done) < len(jobs):
        got = mover.poll(timeout=30)
        assert got, "no job finished within 30 s"
        done.update((d.job_id, d) for d in got)
    return done


@pytest.fixture
def host() -> HostBuf:
    return HostBuf(16)


def test_write_then_read_moves_the_bytes(stores: StoreFactory, host: HostBuf) -> None:
    mover = RemoteMover(stores(), host, workers=3, batch_blocks=2)
    keys, blocks = random_keys(5), random_blocks(5)
    for i, b in enumerate(blocks):
        host.fill(i, b)
    (put,) = run(mover, Job(1, REMOTE_WRITE, [0, 1, 2, 3, 4], [9, 9, 9, 9, 9], keys)).values()
    assert put.ok and put.error is None and put.num_bytes == 5 * STRIDE
    assert put.queue_s >= 0 and put.transfer_s > 0
    # Read into other slots, in another order; src_ids (remote tier ids) are ignored.
    done = run(
        mover,
        Job(2, REMOTE_READ, [0, 0, 0], [10, 11, 12], [keys[4], keys[0], keys[2]]),
        Job(3, REMOTE_READ, [7], [13], [keys[1]]),
    )
    assert all(d.ok for d in done.values())
    assert done[2].num_bytes == 3 * STRIDE
    assert [host.slot(s) for s in (10, 11, 12, 13)] == [blocks[4], blocks[0], blocks[2], blocks[1]]
    assert (mover.read_errors, mover.write_errors, mover.unavailable) == (0, 0, 0)
    mover.close()
    mover.close()
    with pytest.raises(RuntimeError, match="closed"):
        mover.submit(Job(4, REMOTE_READ, [0], [0], keys[:1]))


def test_missing_and_corrupt_blocks_fail_the_job(tmp_path: Path, host: HostBuf) -> None:
    store = FsRemoteStore(tmp_path, STRIDE)
    mover = RemoteMover(store, host, batch_blocks=2)
    keys, blocks = random_keys(4), random_blocks(4)
    store.put(keys[:3], [memoryview(b) for b in blocks[:3]])
    path = store.directory / key_name(keys[1])[:2] / key_name(keys[1])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(data)
    done = run(mover, Job(1, REMOTE_READ, [0] * 4, [0, 1, 2, 3], keys))[1]
    assert not done.ok and done.num_bytes == 2 * STRIDE
    assert done.error is not None and "2 of 4 blocks" in done.error
    assert key_name(keys[1]) in done.error
    assert (mover.read_errors, store.corrupt, mover.unavailable) == (2, 1, 0)
    assert host.slot(0) == blocks[0] and host.slot(2) == blocks[2]
    mover.close()


def test_bad_jobs_fail_without_raising(tmp_path: Path, host: HostBuf) -> None:
    mover = RemoteMover(FsRemoteStore(tmp_path, STRIDE), host)
    keys = random_keys(2)
    done = run(
        mover,
        Job(1, REMOTE_WRITE, [0, 1], [0, 0], keys[:1]),
        Job(2, REMOTE_READ, [0], [16], keys[:1]),
    )
    assert "1 keys for 2 blocks" in str(done[1].error)
    assert "out of range" in str(done[2].error)
    assert (mover.read_errors, mover.write_errors) == (1, 2)
    with pytest.raises(ValueError, match="path"):
        mover.submit(Job(3, H2D, [0], [0]))
    with pytest.raises(ValueError, match="stride"):
        RemoteMover(FsRemoteStore(tmp_path, STRIDE), HostBuf(2, 2 * STRIDE))
    mover.close()


def test_an_outage_fails_jobs_and_is_logged_once(
    stores: StoreFactory, host: HostBuf, caplog: pytest.LogCaptureFixture
) -> None:
    store: RemoteStore = stores()
    mover = RemoteMover(store, host, workers=1)
    keys, blocks = random_keys(3), random_blocks(3)
    for i, b in enumerate(blocks):
        host.fill(i, b)
    caplog.set_level(logging.WARNING, logger="flexkv_engine.transfer.remote")
    stores.outage()
    done = run(
        mover,
        Job(1, REMOTE_WRITE, [0, 1], [0, 0], keys[:2]),
        Job(2, REMOTE_READ, [0], [5], keys[2:]),
        Job(3, REMOTE_WRITE, [2], [0], keys[2:]),
    )
    assert not any(d.ok for d in done.values())
    assert all("unreachable" in str(d.error) for d in done.values())
    assert (mover.write_errors, mover.read_errors, mover.unavailable) == (3, 1, 3)
    stores.restore()
    assert run(mover, Job(4, REMOTE_WRITE, [0], [0], keys[:1]))[4].ok
    assert run(mover, Job(5, REMOTE_READ, [0], [6], keys[:1]))[5].ok
    assert host.slot(6) == blocks[0]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "unreachable" in messages[0]
    assert "reachable again" in messages[1] and "3 jobs failed" in messages[1]
    mover.close()


def test_close_finishes_submitted_jobs(tmp_path: Path, host: HostBuf) -> None:
    mover = RemoteMover(FsRemoteStore(tmp_path, STRIDE), host, workers=2)
    keys = random_keys(16)
    for i in range(16):
        mover.submit(Job(i, REMOTE_WRITE, [i], [0], keys[i : i + 1]))
    mover.close()
    assert sorted(d.job_id for d in mover.poll()) == list(range(16))
