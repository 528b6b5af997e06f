"""Integrity of the SSD tier: every block carries its key and crc32c in the slot table,
checked on load; a block that changed on disk is a miss plus a counted error, never
wrong bytes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexkv_engine.metrics import Metrics
from flexkv_engine.storage import SlotTable, SsdFiles
from flexkv_engine.storage.ssd_table import RECORD_SIZE
from flexkv_engine.transfer import ssd as ssd_mover

torch = pytest.importorskip("torch")

from .ssd_engine import (  # noqa: E402
    BACKENDS,
    assert_idle,
    disk_root,
    drop_cpu,
    get,
    loaded_exactly,
    open_kv,
    put,
    untouched,
)

STRIDE = 8192


@pytest.fixture
def root() -> Iterator[Path]:
    yield from disk_root()


def ssd_ids(kv, keys: list[int]) -> list[int]:
    tier = kv.planner.tiers["ssd"]
    with kv._lock:
        ready, _, handle = tier.lookup(keys, 0.0, hit=False)
        ids = tier.block_ids(handle, 0, ready)
        tier.release(handle)
    return ids


# -- the slot table --------------------------------------------------------------------------


def test_records_round_trip_and_a_torn_record_does_not_verify(root: Path) -> None:
    files = SsdFiles.create([root / "a"], 16, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        big = (1 << 128) - 3  # keys are 128-bit
        table.store([5, 2, 9], [11, 22, 33], [big, 7, 8], parent=1 << 100)
        assert [(r.slot, r.key, r.parent, r.crc) for r in table.records()] == [
            (2, 7, big, 22),
            (5, big, 1 << 100, 11),
            (9, 8, 7, 33),
        ]
        seqs = [table.get(s).seq for s in (5, 2, 9)]  # type: ignore[union-attr]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        table.store([3], [44])  # no keys: checked on read, never restored
        assert table.get(3).key is None  # type: ignore[union-attr]
        table.store([4], [55], [-1])  # a key outside 128 bits: the same
        assert table.get(4).key is None  # type: ignore[union-attr]
        table.clear([9])
        assert table.get(9) is None
    # A byte flipped inside a record (a write torn by a kill) makes it invalid.
    with open(files.slot_table_path, "r+b") as f:
        f.seek(RECORD_SIZE * (2 + 1) + 20)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    files = SsdFiles.create([root / "a"], 16, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        assert files.reopened
        assert table.get(2) is None and table.get(5) is not None
        # The files were preallocated, so every slot counts as on disk; 3 has no key.
        assert [slot for _, _, slot in table.restorable(files)] == [5]


def test_restorable_skips_blocks_whose_file_was_missing_or_short(root: Path) -> None:
    dirs = [root / "a", root / "b"]
    files = SsdFiles.create(dirs, 8, STRIDE, max_file_size=None)  # blocks alternate files
    with files, SlotTable.open(files) as table:
        keys = [101, 102, 103, 104, 105, 106]
        table.store(list(range(6)), [0] * 6, keys)
    os.unlink(files.paths[1])  # blocks 1, 3, 5
    os.truncate(files.paths[0], 2 * STRIDE)  # keeps blocks 0 and 2 (offsets 0, STRIDE)
    files = SsdFiles.create(dirs, 8, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        assert files.found_sizes == (2 * STRIDE, 0)
        assert table.restorable(files) == [(101, None, 0), (103, 102, 2)]
        assert table.keep_only([0]) == 5
        assert [r.slot for r in table.records()] == [0]


def test_a_table_that_cannot_be_trusted_starts_empty(root: Path) -> None:
    dirs = [root / "a", root / "b"]
    files = SsdFiles.create(dirs, 8, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        table.store([0, 1], [5, 6], [42, 43])
    # A table of the wrong size (cut short) is reset...
    os.truncate(files.slot_table_path, 100)
    files = SsdFiles.create(dirs, 8, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        assert files.reopened and table.records() == []
        table.store([0, 1], [5, 6], [42, 43])
    # ... and so is the table of a cache that lost one of its directories.
    for path in (dirs[1] / ".flexkv-twin-ssd", Path(files.paths[1])):
        path.unlink()
    files = SsdFiles.create(dirs, 8, STRIDE, max_file_size=None)
    with files, SlotTable.open(files) as table:
        assert not files.reopened and table.records() == []


# -- through the KV manager ------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_block_changed_on_disk_is_a_miss_and_a_counted_error(
    root: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = list(range(7000, 7006))
    slots = list(range(20, 26))
    metrics = Metrics()
    with open_kv([root / "a", root / "b"], backend, metrics=metrics) as kv:
        assert put(kv, keys, range(6)).status == "done"
        files = kv.ssd_files
        assert files is not None
        index, offset = files.locate(ssd_ids(kv, keys)[4])
        fd = os.open(files.paths[index], os.O_RDWR)
        try:  # one bit of block 4, through the page cache (O_DIRECT reads see it)
            old = os.pread(fd, 1, offset + 1000)
            os.pwrite(fd, bytes([old[0] ^ 0x10]), offset + 1000)
            os.fsync(fd)
        finally:
            os.close(fd)
        drop_cpu(kv)
        with caplog.at_level(logging.ERROR, logger="flexkv_engine"):
            result = get(kv, keys, slots)
        assert result.status == "failed" and result.loaded_blocks == 0
        assert untouched(kv, slots)  # not one byte of the read reached the GPU
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(logged) == 1 and "fails its checksum" in logged[0]
        assert f"{files.paths[index]} offset {offset}" in logged[0]
        stats = kv.stats()
        assert stats["ssd"]["checksum_errors"] == 1 and stats["ssd_errors"] == 1
        # Dropped from the bad block on; the blocks before it checked out and stay.
        assert kv.planner.tiers["ssd"].probe(keys) == (4, 4)
        text = metrics.text()
        assert "flexkv_ssd_checksum_errors_total 1.0" in text
        assert "flexkv_ssd_dropped_blocks_total 2.0" in text
        assert 'flexkv_failed_ops_total{path="ssd_read"} 1.0' in text
        assert_idle(kv)
        # Stored again by the next PUT, then read back exactly.
        assert put(kv, keys, range(6)).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.hit_blocks["ssd"] == 6 and loaded_exactly(kv, keys, slots, 6)
        assert kv.stats()["ssd"]["checksum_errors"] == 1


@pytest.mark.faults
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_slot_recorded_for_another_key_is_not_served(root: Path, backend: str) -> None:
    keys = list(range(8000, 8004))
    slots = list(range(20, 24))
    with open_kv([root / "a"], backend) as kv:
        assert put(kv, keys, range(4)).status == "done"
        table = kv._movers["ssd_read"].table  # type: ignore[attr-defined]
        slot = ssd_ids(kv, keys)[2]
        record = table.get(slot)
        assert record is not None and record.key == keys[2]
        table.store([slot], [record.crc], [9999])  # the right bytes, another key
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.loaded_blocks == 0 and untouched(kv, slots)
        assert "holds key 0x270f" in result.errors[0]
        assert kv.stats()["ssd"]["checksum_errors"] == 1
        assert kv.planner.tiers["ssd"].probe(keys) == (2, 2)
        assert_idle(kv)


@pytest.mark.faults
@pytest.mark.parametrize("backend", BACKENDS)
def test_jobs_checked_in_pieces_keep_their_chains_and_fail_whole(
    root: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssd_mover, "PIECE_BYTES", 2 * 16384)  # pieces of two blocks
    keys = list(range(9000, 9008))
    slots = list(range(20, 28))
    dirs = [root / "a"]
    with open_kv(dirs, backend) as kv:
        assert put(kv, keys, range(8)).status == "done"  # four pieces
        files = kv.ssd_files
        assert files is not None
        index, offset = files.locate(ssd_ids(kv, keys)[5])
    with open_kv(dirs, backend) as kv:  # parents recorded across piece boundaries
        assert kv.stats()["ssd"]["restored_blocks"] == 8
        fd = os.open(files.paths[index], os.O_RDWR)
        try:  # block 5, in the third piece
            os.pwrite(fd, b"\0" * 64, offset + 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        result = get(kv, keys, slots)
        assert result.status == "failed" and result.loaded_blocks == 0
        assert untouched(kv, slots)
        assert f"offset {offset}: ssd block" in result.errors[0]
        assert kv.stats()["ssd"]["checksum_errors"] == 1
        assert kv.planner.tiers["ssd"].probe(keys) == (5, 5)  # the other pieces checked out
        assert kv.stats()["ssd"]["dropped_blocks"] == 3
        assert_idle(kv)
        assert put(kv, keys, range(8)).status == "done"
        drop_cpu(kv)
        result = get(kv, keys, slots)
        assert result.hit_blocks["ssd"] == 8 and loaded_exactly(kv, keys, slots, 8)
        assert_idle(kv)
