"""The fs remote store beyond the common contract: atomic objects, its files, the shared
counts and their repair."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from flexkv_engine.storage.remote import key_name, object_size
from flexkv_engine.storage.remote.fs import USAGE_FILE, FsRemoteStore, namespace_dir

from .conftest import STRIDE, poisoned, random_blocks, random_keys

OBJ = object_size(STRIDE)


def views(buffers: list[bytes] | list[bytearray]) -> list[memoryview]:
    return [memoryview(b) for b in buffers]


def test_a_reader_never_sees_a_half_written_object(tmp_path: Path) -> None:
    writer, reader = FsRemoteStore(tmp_path, STRIDE), FsRemoteStore(tmp_path, STRIDE)
    key = random_keys(1)[0]
    versions = random_blocks(2, seed=3)
    writer.put([key], views(versions[:1]))
    path = writer.directory / key_name(key)[:2] / key_name(key)
    stop = threading.Event()
    rewrites = 0

    def rewrite() -> None:
        nonlocal rewrites
        while not stop.is_set():
            writer.put([key], views(versions[rewrites % 2 :][:1]))
            rewrites += 1

    thread = threading.Thread(target=rewrite)
    thread.start()
    reads, sizes = 0, set()
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            out = poisoned(1)
            assert reader.get([key], views(out)) == [True]
            assert bytes(out[0]) in versions
            sizes.add(path.stat().st_size)
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert reads > 10 and rewrites > 10
    assert sizes == {OBJ} and reader.corrupt == 0
    assert writer.size() == (1, OBJ)


def test_files_and_names(tmp_path: Path) -> None:
    store = FsRemoteStore(tmp_path / "mnt", STRIDE, key_prefix="job-1:")
    assert store.directory == tmp_path / "mnt" / "job-1"
    key = 0x0123456789ABCDEF0123456789ABCDEF
    store.put([key], views(random_blocks(1)))
    path = store.directory / "01" / "0123456789abcdef0123456789abcdef"
    assert path.stat().st_size == OBJ
    data = path.read_bytes()
    assert data[:4] == b"FKVB" and int.from_bytes(data[8:24], "little") == key
    assert sorted(p.name for p in store.directory.iterdir()) == [USAGE_FILE, "01"]
    assert namespace_dir(tmp_path, "") == tmp_path
    assert namespace_dir(tmp_path, "a::") == tmp_path / "a"


def test_a_temporary_file_is_no_object_and_a_stale_one_is_removed(tmp_path: Path) -> None:
    store = FsRemoteStore(tmp_path, STRIDE)
    keys, blocks = random_keys(2), random_blocks(2)
    store.put(keys[:1], views(blocks[:1]))
    name = key_name(keys[1])
    folder = store.directory / name[:2]
    folder.mkdir(exist_ok=True)
    fresh = folder / f".{name}.crashed-writer.0.tmp"
    stale = folder / f".{name}.crashed-writer.1.tmp"
    for temp in (fresh, stale):
        temp.write_bytes(b"half a block")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert store.exists(keys) == [True, False]
    assert store.get(keys[1:], views(poisoned(1))) == [False]
    assert store.recount() == (1, OBJ)
    assert fresh.exists() and not stale.exists()


def test_counts_are_rebuilt_when_the_usage_file_is_lost(tmp_path: Path) -> None:
    store = FsRemoteStore(tmp_path, STRIDE, capacity_bytes=3 * OBJ)
    keys, blocks = random_keys(5), random_blocks(5)
    store.put(keys[:3], views(blocks[:3]))
    (store.directory / USAGE_FILE).unlink()
    assert store.size() == (3, 3 * OBJ)  # reopened and counted
    store.put(keys[3:], views(blocks[3:]))  # the write stamps keep increasing
    assert store.exists(keys) == [False, False, True, True, True]


def test_a_scan_repairs_counts_and_eviction_skips_what_others_removed(tmp_path: Path) -> None:
    store = FsRemoteStore(tmp_path, STRIDE, capacity_bytes=4 * OBJ)
    other = FsRemoteStore(tmp_path, STRIDE, capacity_bytes=4 * OBJ)
    keys, blocks = random_keys(8), random_blocks(8)
    store.put(keys[:4], views(blocks[:4]))
    store.put(keys[4:5], views(blocks[4:5]))  # scans: candidates k1, k2, k3, k4
    assert store.exists(keys[:5]) == [False, True, True, True, True]
    assert other.delete(keys[1:2]) == 1  # gone before store's candidate list gets to it
    store.put(keys[5:7], views(blocks[5:7]))
    assert store.exists(keys[:7]) == [False, False, False, True, True, True, True]
    # Files removed behind the store's back: the counts are off until a scan.
    victim = store.directory / key_name(keys[3])[:2] / key_name(keys[3])
    victim.unlink()
    assert store.size() == (4, 4 * OBJ)
    assert store.recount() == (3, 3 * OBJ) == other.size()


def test_the_root_must_be_creatable(tmp_path: Path) -> None:
    from flexkv_engine.storage.remote import RemoteStoreError

    with pytest.raises(RemoteStoreError, match="not a directory"):
        FsRemoteStore(tmp_path / "a" / "b", STRIDE)
    store = FsRemoteStore(tmp_path / "a", STRIDE)
    store.close()
    store.close()
    with pytest.raises(RemoteStoreError, match="closed"):
        store.size()


def test_without_flock_the_store_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    caplog.set_level(logging.WARNING, logger="flexkv_engine.storage.remote.fs")
    store = FsRemoteStore(tmp_path, STRIDE, capacity_bytes=2 * OBJ)
    keys, blocks = random_keys(3), random_blocks(3)
    for i in range(3):
        store.put(keys[i : i + 1], views(blocks[i : i + 1]))
    assert store.exists(keys) == [False, True, True] and store.size() == (2, 2 * OBJ)
    (record,) = caplog.records  # warned once, not per call
    assert "flock" in record.getMessage()
