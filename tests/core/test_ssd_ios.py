"""The SSD tier's file count and I/O merging rule, shared by the engine and the twin."""

from __future__ import annotations

import random

import pytest

from flexkv_engine.core.ssd_ios import blocks_per_io, count_ios, num_files


def test_blocks_merge_when_next_in_the_file_and_in_the_host_pool() -> None:
    # one file: consecutive ids merge while the host slots are consecutive too
    assert count_ios([4, 5, 6], [10, 11, 12], 1, 16) == 1
    assert count_ios([4, 5, 6], [10, 12, 13], 1, 16) == 2  # host gap after the first
    assert count_ios([4, 6, 7], [10, 11, 12], 1, 16) == 2  # SSD gap
    assert count_ios([6, 5, 4], [12, 11, 10], 1, 16) == 3  # backwards never merges
    # two files: the next block of a file is id + 2
    assert count_ios([1, 3, 5], [0, 1, 2], 2, 16) == 1
    assert count_ios([1, 2, 3], [0, 1, 2], 2, 16) == 3
    assert count_ios([], [], 1, 16) == 0


def test_an_io_holds_at_most_blocks_per_io_blocks() -> None:
    assert blocks_per_io(65536) == 16 and blocks_per_io(131072) == 8
    assert blocks_per_io(4 << 20) == 1  # a block larger than the limit is one I/O
    ids = list(range(40))
    assert count_ios(ids, ids, 1, 16) == 3  # 16 + 16 + 8
    assert count_ios(ids, ids, 1, 1) == 40


def test_file_count_follows_directories_and_the_file_size_bound() -> None:
    assert num_files(3, 1000, 4096, None) == 3
    assert num_files(2, 1000, 4096, -1) == 2
    # 100 blocks per file at most: 1000 blocks over 2 directories need 5 files each
    assert num_files(2, 1000, 4096, 100 * 4096) == 10


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        count_ios([1, 2], [1], 1, 16)


def test_random_ops_never_count_more_ios_than_blocks() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 40)
        start = rng.randint(0, 50)
        ssd = [start + i if rng.random() < 0.7 else rng.randint(0, 200) for i in range(n)]
        host = [i if rng.random() < 0.8 else rng.randint(0, 200) for i in range(n)]
        ios = count_ios(ssd, host, 1, 8)
        assert -(-n // 8) <= ios <= n
