"""What the SSD tier's integrity checks cost: the SSD mover with its slot table (records
stored after each write, crc32c and key checked on each read) against the same mover
without one, side by side on the same files, alternating rounds.

Blocks of ``--block-size`` (default 2 MiB: one 16-token block of Llama-3-8B) move in
jobs of ``--job-blocks``, either one job at a time (``--serial``: the latency of a lone
op) or all jobs of a pass at once (throughput at the queue depth). Prints GB/s (1e9 B/s)
per direction and mode, medians over ``--rounds``, and the crc32c speed of this CPU.

    python bench/ssd_checks.py [--backend io_uring|threads] [--serial] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import mmap
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from flexkv_engine import _native
from flexkv_engine.storage import SlotTable, SsdFiles, open_ssd_backend
from flexkv_engine.transfer.protocol import Job
from flexkv_engine.transfer.ssd import SsdMover


class HostSlots:
    """Page-aligned host slots (an anonymous mmap) with the host-pool attributes."""

    def __init__(self, count: int, stride: int) -> None:
        self.mm = mmap.mmap(-1, count * stride)
        self.array = np.frombuffer(self.mm, dtype=np.uint8)
        self.base_ptr, self.stride, self.num_blocks = self.array.ctypes.data, stride, count


def one_pass(mover: SsdMover, write: bool, blocks: int, job: int, slots: int, serial: bool,
             ids: itertools.count) -> float:  # fmt: skip
    """GB/s of moving every block once."""
    began = time.perf_counter()
    wanted: set[int] = set()
    for start in range(0, blocks, job):
        ssd = list(range(start, min(start + job, blocks)))
        host = [b % slots for b in ssd]
        keys = [1_000_000 + b for b in ssd]
        job_id = next(ids)
        parent = keys[0] - 1 if start else None
        if write:
            mover.submit(Job(job_id, "ssd_write", host, ssd, keys, parent))
        else:
            mover.submit(Job(job_id, "ssd_read", ssd, host, keys))
        wanted.add(job_id)
        while wanted and (serial or start + job >= blocks):
            for done in mover.poll(1.0):
                assert done.ok, done.error
                wanted.discard(done.job_id)
    return blocks * mover.backend.files.stride / (time.perf_counter() - began) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="io_uring", choices=["io_uring", "threads"])
    parser.add_argument("--block-size", type=int, default=2 << 20)
    parser.add_argument("--blocks", type=int, default=512)
    parser.add_argument("--job-blocks", type=int, default=16)
    parser.add_argument("--queue-depth", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serial", action="store_true")
    parser.add_argument("--dir", default="/var/tmp/flexkv-bench/ssd-checks")
    args = parser.parse_args()

    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    host = HostSlots(64, args.block_size)
    host.array[:] = np.random.default_rng(1).integers(0, 256, host.array.size, dtype=np.uint8)
    files = SsdFiles.create([root], args.blocks, args.block_size, max_file_size=None)
    open_backend = lambda: open_ssd_backend(  # noqa: E731
        files, host, queue_depth=args.queue_depth, prefer=args.backend
    )
    movers = {"checked": SsdMover(open_backend(), SlotTable.open(files), host),
              "unchecked": SsdMover(open_backend())}  # fmt: skip
    ids = itertools.count(1)
    run = lambda mode, write: one_pass(  # noqa: E731
        movers[mode], write, args.blocks, args.job_blocks, 64, args.serial, ids
    )
    run("checked", True)  # first write into fresh extents, and the records for the reads
    gbps: dict[str, dict[str, list[float]]] = {m: {"write": [], "read": []} for m in movers}
    for _ in range(args.rounds):
        for mode in movers:
            gbps[mode]["write"].append(run(mode, True))
            gbps[mode]["read"].append(run(mode, False))
    view = memoryview(host.mm)
    began = time.perf_counter()
    for i in range(256):
        _native.crc32c(view[(i % 64) * args.block_size : (i % 64 + 1) * args.block_size])
    crc_gbps = 256 * args.block_size / (time.perf_counter() - began) / 1e9
    for mover in movers.values():
        mover.close()
    files.close()
    shutil.rmtree(root, ignore_errors=True)
    med = {m: {d: round(statistics.median(v), 3) for d, v in x.items()} for m, x in gbps.items()}
    print(json.dumps({
        "backend": args.backend, "serial": args.serial, "block_size": args.block_size,
        "job_blocks": args.job_blocks, "queue_depth": args.queue_depth,
        "crc32c_GBps": round(crc_gbps, 2), "GBps": med,
        "ratio": {d: round(med["checked"][d] / med["unchecked"][d], 3) for d in ("write", "read")},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
