"""How the SSD tier's blocks lie in its files, and how many I/Os an op of them takes.

Blocks are striped over the files (block ``b`` in file ``b % num_files`` at offset
``(b // num_files) * stride``), and an op merges blocks that follow each other both in one
file and in the host pool into one I/O of at most ``MAX_IO_BYTES``: the rule of the
io_uring engine (``csrc/io/uring_engine.cpp``) and of ``storage.ssd_io.plan_ios``. The
engine records each SSD op's I/O count in its trace; the twin counts the I/Os of its own
ops the same way and charges the SSD's per-I/O cost by them, so a workload whose blocks
merge well is predicted to move them faster.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_IO_BYTES = 1 << 20
"""Largest merged I/O (a block larger than this is one I/O of its own)."""


def num_files(num_dirs: int, num_blocks: int, stride: int, max_file_size: int | None) -> int:
    """Files the tier stripes its blocks over: one per directory, or as many per
    directory as ``max_file_size`` (bytes; None or <= 0: unbounded) needs."""
    if max_file_size is None or max_file_size <= 0:
        return num_dirs
    blocks_per_file = max(max_file_size // stride, 1)
    return num_dirs * max(1, -(-num_blocks // (num_dirs * blocks_per_file)))


def blocks_per_io(stride: int, max_io_bytes: int = MAX_IO_BYTES) -> int:
    """Most blocks one merged I/O holds."""
    return max(max_io_bytes // stride, 1)


def count_ios(
    ssd_ids: Sequence[int], host_ids: Sequence[int], files: int, per_io: int
) -> int:
    """I/Os of an op moving SSD block ``ssd_ids[i]`` <-> host slot ``host_ids[i]``:
    block ``i`` joins the I/O of block ``i - 1`` when it is the next block of the same
    file (``ssd_ids[i - 1] + files``) and the next host slot, and that I/O holds fewer
    than ``per_io`` blocks."""
    ios = run = 0
    prev_s = prev_h = -1
    for s, h in zip(ssd_ids, host_ids, strict=True):
        if run and s == prev_s + files and h == prev_h + 1 and run < per_io:
            run += 1
        else:
            ios += 1
            run = 1
        prev_s, prev_h = s, h
    return ios
