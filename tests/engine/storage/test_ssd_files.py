"""``SsdFiles``: layout, preallocation, O_DIRECT, directory ownership, reopen, removal."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from flexkv_engine.storage import SsdFiles, SsdFilesError, filesystem_type
from flexkv_engine.storage.ssd_files import MARKER, block_file_name

STRIDE = 16384


def test_one_file_per_directory_without_a_size_bound(disk_dir: Path) -> None:
    dirs = [disk_dir / "a", disk_dir / "b"]
    with SsdFiles.create(dirs, 5, STRIDE, max_file_size=None) as files:
        assert files.nfiles == 2
        assert files.paths == (
            str(dirs[0] / block_file_name(0)),
            str(dirs[1] / block_file_name(1)),
        )
        # b -> (b % nfiles, (b // nfiles) * stride); file 0 holds 3 blocks, file 1 holds 2
        assert [files.locate(b) for b in range(5)] == [
            (0, 0),
            (1, 0),
            (0, STRIDE),
            (1, STRIDE),
            (0, 2 * STRIDE),
        ]
        assert os.path.getsize(files.paths[0]) == 3 * STRIDE
        assert os.path.getsize(files.paths[1]) == 2 * STRIDE
        with pytest.raises(IndexError, match="ssd id 5 out of range"):
            files.locate(5)


def test_max_file_size_splits_each_directory(disk_dir: Path) -> None:
    dirs = [disk_dir / "a", disk_dir / "b", disk_dir / "c"]
    # 60 blocks, at most 10 per file: 6 files, 2 per directory, 10 blocks each
    with SsdFiles.create(dirs, 60, STRIDE, max_file_size=10 * STRIDE + 100) as files:
        assert files.nfiles == 6
        for i, path in enumerate(files.paths):
            assert Path(path).parent == dirs[i % 3]
            assert Path(path).name == block_file_name(i)
            assert os.path.getsize(path) == 10 * STRIDE
        assert files.locate(59) == (5, 9 * STRIDE)
    with pytest.raises(SsdFilesError, match="smaller than one block"):
        SsdFiles.create([disk_dir / "d"], 4, STRIDE, max_file_size=STRIDE - 1)


def test_files_are_preallocated_and_opened_with_o_direct(disk_dir: Path) -> None:
    assert filesystem_type(disk_dir) not in {"tmpfs", "ramfs"}
    with SsdFiles.create([disk_dir], 8, STRIDE, max_file_size=None) as files:
        assert files.direct
        for fd, path in zip(files.fds, files.paths, strict=True):
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
            st = os.stat(path)
            assert st.st_size == 8 * STRIDE
            assert st.st_blocks * 512 >= 8 * STRIDE  # space reserved, not a sparse file


def test_marker_records_the_geometry(disk_dir: Path) -> None:
    dirs = [disk_dir / "a", disk_dir / "b"]
    with SsdFiles.create(dirs, 10, STRIDE, max_file_size=None):
        marker = json.loads((dirs[1] / MARKER).read_text())
    assert marker["version"] == 1
    assert (marker["stride"], marker["num_blocks"]) == (STRIDE, 10)
    assert (marker["num_files"], marker["num_dirs"], marker["dir_index"]) == (2, 2, 1)
    assert marker["files"] == [block_file_name(1)]


def test_refuses_a_directory_with_foreign_files(disk_dir: Path) -> None:
    mine, theirs = disk_dir / "mine", disk_dir / "theirs"
    theirs.mkdir()
    (theirs / "model.safetensors").write_bytes(b"precious")
    with pytest.raises(SsdFilesError) as info:
        SsdFiles.create([mine, theirs], 4, STRIDE, max_file_size=None)
    message = str(info.value)
    assert str(theirs) in message and "model.safetensors" in message
    assert (theirs / "model.safetensors").read_bytes() == b"precious"
    assert not mine.exists()  # checked before anything was created


def test_refuses_a_stray_file_in_an_owned_directory(disk_dir: Path) -> None:
    SsdFiles.create([disk_dir], 4, STRIDE, max_file_size=None).close()
    (disk_dir / "notes.txt").write_text("hello")
    with pytest.raises(SsdFilesError, match=r"notes\.txt"):
        SsdFiles.create([disk_dir], 4, STRIDE, max_file_size=None)


def test_reopen_with_the_same_geometry_keeps_the_bytes(disk_dir: Path) -> None:
    dirs = [disk_dir / "a", disk_dir / "b"]
    payload = os.urandom(STRIDE)
    with SsdFiles.create(dirs, 6, STRIDE, max_file_size=None) as files:
        index, offset = files.locate(3)
        path = files.paths[index]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(payload)
    with SsdFiles.create(dirs, 6, STRIDE, max_file_size=None) as again:
        assert again.paths[index] == path
        assert again.locate(3) == (index, offset)
    with open(path, "rb") as f:
        f.seek(offset)
        assert f.read(STRIDE) == payload


@pytest.mark.parametrize(
    ("blocks", "stride", "dirs"),
    [(7, STRIDE, 2), (6, 2 * STRIDE, 2), (6, STRIDE, 1)],
    ids=["blocks", "stride", "directories"],
)
def test_reopen_with_another_geometry_is_an_error(
    disk_dir: Path, blocks: int, stride: int, dirs: int
) -> None:
    paths = [disk_dir / "a", disk_dir / "b"]
    SsdFiles.create(paths, 6, STRIDE, max_file_size=None).close()
    with pytest.raises(SsdFilesError, match="another geometry"):
        SsdFiles.create(paths[:dirs], blocks, stride, max_file_size=None)


def test_directories_in_another_order_are_another_geometry(disk_dir: Path) -> None:
    paths = [disk_dir / "a", disk_dir / "b"]
    SsdFiles.create(paths, 6, STRIDE, max_file_size=None).close()
    with pytest.raises(SsdFilesError, match="another geometry"):
        SsdFiles.create(paths[::-1], 6, STRIDE, max_file_size=None)


def test_a_directory_in_use_is_refused(disk_dir: Path) -> None:
    with (
        SsdFiles.create([disk_dir], 4, STRIDE, max_file_size=None),
        pytest.raises(SsdFilesError, match="in use"),
    ):
        SsdFiles.create([disk_dir], 4, STRIDE, max_file_size=None)
    SsdFiles.create([disk_dir], 4, STRIDE, max_file_size=None).close()  # released


def test_the_same_directory_twice_is_refused(disk_dir: Path) -> None:
    with pytest.raises(SsdFilesError, match="twice"):
        SsdFiles.create([disk_dir, disk_dir / "."], 4, STRIDE, max_file_size=None)


def test_remove_deletes_block_files_and_markers(disk_dir: Path) -> None:
    dirs = [disk_dir / "a", disk_dir / "b"]
    files = SsdFiles.create(dirs, 4, STRIDE, max_file_size=None)
    files.remove()
    assert files.closed
    for d in dirs:
        assert d.is_dir() and not list(d.iterdir())
    files.close()  # idempotent


@pytest.mark.parametrize("bad", [0, 4095, 6000])
def test_stride_must_be_a_multiple_of_4096(disk_dir: Path, bad: int) -> None:
    with pytest.raises(SsdFilesError, match="multiple of 4096"):
        SsdFiles.create([disk_dir], 4, bad, max_file_size=None)


def test_tmpfs_directory_still_works(caplog: pytest.LogCaptureFixture) -> None:
    shm = Path("/dev/shm")
    if filesystem_type(shm) != "tmpfs" or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    import tempfile

    d = Path(tempfile.mkdtemp(dir=shm))
    try:
        with SsdFiles.create([d], 4, STRIDE, max_file_size=None) as files:
            flags = fcntl.fcntl(files.fds[0], fcntl.F_GETFL)
            assert files.direct == bool(flags & os.O_DIRECT)
            if not files.direct:
                assert "O_DIRECT refused" in caplog.text
        files.remove()
    finally:
        os.rmdir(d)
