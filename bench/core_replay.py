"""Core benchmark: the planner's hit-rate path on the Mooncake conversation trace.

Replays the trace with a CPU tier of a given token capacity at 512-token blocks (the
trace's own) and at 16-token blocks (each hash id expanded into 32 chained sub-block
keys, the last request block cut to ceil(input_length / 16) keys), GET then PUT of every
request (GET match, PUT insert, eviction, allocator), through ``Planner.access`` (the
twin's hit-rate mode) and through transfer graphs with block ids (the engine's path),
each over the Python index and over the native one (``*_native``, when the native
module is built), and times, in the same run, a bare ``OrderedDict`` LRU loop over the
same keys as a baseline. Prints a JSON report.

    python bench/core_replay.py [--tokens 3e6] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from collections import OrderedDict

from flexkv_engine.core.index import make_tier_index
from flexkv_engine.core.keys import expand_keys
from flexkv_engine.core.planner import Planner
from flexkv_engine.trace import load_requests, public_traces_dir
from flexkv_sim.progress import cyclic_gc_paused


def load(block: int) -> list[tuple[float, int, list[int]]]:
    _, requests = load_requests(public_traces_dir() / "conversation_trace.jsonl")
    if block == 512:
        return [(r.t, r.num_tokens, r.keys) for r in requests]
    factor = 512 // block
    return [(r.t, r.num_tokens, expand_keys(r.keys, factor, r.num_tokens, block)) for r in requests]


def native_built() -> bool:
    try:
        from flexkv_engine.core import native_index  # noqa: F401
    except ImportError:
        return False
    return True


def planner_replay(
    requests, capacity: int, block: int, path: str, native: bool
) -> tuple[float, float, int]:
    """The planner's hit-rate path: ``access`` (what ``flexkv-sim replay`` runs for a CPU
    tier, no block ids kept) or ``graphs`` (transfer graphs and block ids, as the engine),
    over the native index or the Python one."""
    tier = make_tier_index("cpu", capacity, track_ids=path == "graphs", native=native)
    planner = Planner({"cpu": tier}, block)
    plan_get, plan_put, run, access = (
        planner.plan_get,
        planner.plan_put,
        planner.run,
        planner.access,
    )
    start = time.perf_counter()
    with cyclic_gc_paused():  # as flexkv-sim replay does
        if path == "access":
            for i, (t, tokens, keys) in enumerate(requests):
                access(i, keys, tokens, t)
        else:
            for i, (t, tokens, keys) in enumerate(requests):
                run(plan_get(i, keys, tokens, t))
                run(plan_put(i, keys, tokens, t))
    elapsed = time.perf_counter() - start
    return elapsed, planner.stats.hit_rate, tier.num_nodes


def bare_lru(requests, capacity: int, block: int) -> tuple[float, float]:
    """Per-block OrderedDict LRU, blocks touched head-first (a timing baseline only)."""
    lru: OrderedDict[int, None] = OrderedDict()
    hit = total = 0
    start = time.perf_counter()
    for _, tokens, keys in requests:
        n = 0
        for key in keys:
            if key in lru:
                lru.move_to_end(key)
                n += 1
            else:
                break
        for key in keys[n:]:
            lru[key] = None
        while len(lru) > capacity:
            lru.popitem(last=False)
        hit += min(n * block, tokens)
        total += tokens
    return time.perf_counter() - start, hit / total


def best(fn, repeat: int, *args):
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(fn(*args))
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=float, nargs="+", default=[3e6])
    parser.add_argument("--blocks", type=int, nargs="+", default=[512, 16])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = {"python": platform.python_version(), "machine": platform.machine(), "runs": []}
    variants = [("access", False), ("graphs", False)]
    if native_built():
        variants += [("access", True), ("graphs", True)]
    for block in args.blocks:
        requests = load(block)
        block_ops = 2 * sum(len(k) for _, _, k in requests)  # each block matched and put
        for tokens in args.tokens:
            capacity = int(tokens // block)
            bare_s, bare_hr = best(bare_lru, args.repeat, requests, capacity, block)
            run = {
                "tokens_per_block": block,
                "capacity_tokens": tokens,
                "capacity_blocks": capacity,
                "requests": len(requests),
                "bare_lru_s": round(bare_s, 4),
                "bare_lru_hit_rate": round(bare_hr, 4),
            }
            for path, native in variants:
                ours_s, ours_hr, nodes = best(
                    planner_replay, args.repeat, requests, capacity, block, path, native
                )
                run[path + ("_native" if native else "")] = {
                    "seconds": round(ours_s, 4),
                    "requests_per_s": round(len(requests) / ours_s),
                    "block_ops_per_s": round(block_ops / ours_s),
                    "hit_rate": round(ours_hr, 4),
                    "index_nodes": nodes,
                    "over_bare": round(ours_s / bare_s, 3),
                    "us_per_request": round(ours_s / len(requests) * 1e6, 2),
                }
            report["runs"].append(run)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
