"""Block keys: per-block time of the native paths (csrc/keys) against core/keys.py's own.

Hashes random token sequences (``--tokens`` tokens each, vocabulary of 128,000) at each
``--blocks`` size with every implementation in the same run, and checks that they give
the same keys. The native one-sequence call is timed on a list of ints and on a numpy
int64 array (read in place); the batched call (``block_keys_many``: all ``--sequences``
in one call, hashed side by side, one per SIMD lane) on lists and on arrays with the
fastest code this CPU runs, on the calling thread only (``threads=1``) and spread over
the cores (``threads=None``, automatic), and on arrays with each other implementation it
can be asked for, on one thread. Prints a JSON report.

    python bench/block_keys.py [--tokens 12000] [--sequences 20] [--blocks 16 512] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Callable

import numpy as np

from flexkv_engine import _native
from flexkv_engine.core.keys import num_blocks, python_block_keys


def best_seconds(fn: Callable[..., object], seqs: list, tpb: int, repeat: int) -> float:
    """Best time of ``repeat`` passes of ``fn(seq, tpb)`` over every sequence."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for seq in seqs:
            fn(seq, tpb)
        runs.append(time.perf_counter() - start)
    return min(runs)


def native(seq, tpb: int) -> list[int]:
    return _native.block_keys(seq, tpb, b"")


def best_batch_seconds(
    seqs: list, tpb: int, repeat: int, implementation: str | None, threads: int | None = 1
) -> float:
    """Best time of ``repeat`` calls of ``block_keys_many`` on every sequence at once."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        _native.block_keys_many(seqs, tpb, b"", implementation=implementation, threads=threads)
        runs.append(time.perf_counter() - start)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=12000, help="tokens per sequence")
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--blocks", type=int, nargs="+", default=[16, 512])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lists = [[rng.randrange(128000) for _ in range(args.tokens)] for _ in range(args.sequences)]
    arrays = [np.array(seq, dtype=np.int64) for seq in lists]
    report: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "tokens_per_sequence": args.tokens,
        "sequences": args.sequences,
        "batch_implementation": _native.block_keys_implementation(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "runs": [],
    }
    runs: list[dict[str, object]] = []
    best = _native.block_keys_implementation()
    for tpb in args.blocks:
        blocks = args.sequences * num_blocks(args.tokens, tpb)
        for seq, arr in zip(lists, arrays, strict=True):
            want = python_block_keys(seq, tpb)
            assert _native.block_keys(seq, tpb, b"") == want
            assert _native.block_keys(arr, tpb, b"") == want
        wants = [python_block_keys(seq, tpb) for seq in lists]
        others = [n for n in _native.block_keys_implementations() if n != best]
        for impl in [None, *others]:
            for threads in (1, None):
                got = _native.block_keys_many(
                    arrays, tpb, b"", implementation=impl, threads=threads
                )
                assert got == wants
        assert _native.block_keys_many(lists, tpb, b"", threads=1) == wants
        assert _native.block_keys_many(lists, tpb, b"") == wants
        py = best_seconds(python_block_keys, lists, tpb, args.repeat)
        nat_list = best_seconds(native, lists, tpb, args.repeat)
        nat_arr = best_seconds(native, arrays, tpb, args.repeat)
        batch_list = best_batch_seconds(lists, tpb, args.repeat, None)
        batch_arr = best_batch_seconds(arrays, tpb, args.repeat, None)
        threaded_list = best_batch_seconds(lists, tpb, args.repeat, None, threads=None)
        threaded_arr = best_batch_seconds(arrays, tpb, args.repeat, None, threads=None)
        run: dict[str, object] = {
            "tokens_per_block": tpb,
            "blocks": blocks,
            "python_us_per_block": round(py / blocks * 1e6, 3),
            "native_list_us_per_block": round(nat_list / blocks * 1e6, 3),
            "native_numpy_us_per_block": round(nat_arr / blocks * 1e6, 3),
            f"batch_{best}_list_us_per_block": round(batch_list / blocks * 1e6, 3),
            f"batch_{best}_numpy_us_per_block": round(batch_arr / blocks * 1e6, 3),
            f"batch_{best}_threads_list_us_per_block": round(threaded_list / blocks * 1e6, 3),
            f"batch_{best}_threads_numpy_us_per_block": round(threaded_arr / blocks * 1e6, 3),
            "speedup_list": round(py / nat_list, 2),
            "speedup_numpy": round(py / nat_arr, 2),
            f"speedup_batch_{best}_list": round(py / batch_list, 2),
            f"speedup_batch_{best}_numpy": round(py / batch_arr, 2),
            f"speedup_batch_{best}_threads_list": round(py / threaded_list, 2),
            f"speedup_batch_{best}_threads_numpy": round(py / threaded_arr, 2),
        }
        for impl in others:
            sec = best_batch_seconds(arrays, tpb, args.repeat, impl)
            run[f"batch_{impl}_numpy_us_per_block"] = round(sec / blocks * 1e6, 3)
            run[f"speedup_batch_{impl}_numpy"] = round(py / sec, 2)
        runs.append(run)
    report["runs"] = runs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
