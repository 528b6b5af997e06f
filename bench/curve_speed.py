"""Hit-rate curve speed: the whole LRU curve in one pass against a five-point sweep.

On the Mooncake conversation trace (12,031 requests), at its 512-token blocks and at
16-token blocks (each hash id expanded into 32 chained sub-block keys), times
``hit_rate_curve`` (every capacity) and five ``replay_hitrate`` runs (CPU tiers of 1e6,
3e6, 1e7, 3e7 and 1e8 tokens), checks that the curve gives the replays' hit rates
exactly, and prints a JSON report. Target: the curve within the time of the five
replays. Each figure is the best of ``--repeat`` runs, wall time of the whole call.

    python bench/curve_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

from flexkv_engine.core.keys import expand_keys
from flexkv_engine.replay_input import ReplayInput, prepare_replay
from flexkv_engine.trace import public_traces_dir
from flexkv_sim.curve import hit_rate_curve
from flexkv_sim.replay import replay_hitrate

SWEEP_TOKENS = (1e6, 3e6, 1e7, 3e7, 1e8)


def with_capacity(inp: ReplayInput, blocks: int) -> ReplayInput:
    cc = dataclasses.replace(inp.config.cache_config, num_cpu_blocks=blocks)
    return dataclasses.replace(inp, config=dataclasses.replace(inp.config, cache_config=cc))


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        begin = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - begin)
    return best, result


def measure(inp: ReplayInput, repeat: int) -> dict:
    tpb = inp.config.cache_config.tokens_per_block
    curve_s, curve = timed(lambda: hit_rate_curve(inp, progress=False), repeat)
    table_s, caps = timed(lambda: curve.capacities("changes"), repeat)
    points = []
    sweep_s = 0.0
    for tokens in SWEEP_TOKENS:
        blocks = int(tokens // tpb)
        point = with_capacity(inp, blocks)
        wall, result = timed(lambda p=point: replay_hitrate(p, progress=False), repeat)
        sweep_s += wall
        rate = result.planner.stats.hit_rate
        points.append(
            {
                "tokens": tokens,
                "blocks": blocks,
                "replay_s": round(wall, 3),
                "hit_rate": round(rate, 4),
                "curve_equal": curve.hit_rate_at(blocks) == rate,
            }
        )
    return {
        "tokens_per_block": tpb,
        "block_accesses": sum(len(r.keys) for r in inp.requests),
        "distinct_blocks": curve.distinct_blocks,
        "curve_s": round(curve_s, 3),
        "curve_table_s": round(table_s, 3),
        "curve_rows_changes": int(caps.size),
        "curve_rows_corners": int(curve.capacities("corners").size),
        "five_replays_s": round(sweep_s, 3),
        "curve_over_five_replays": round(curve_s / sweep_s, 3),
        "points": points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inp = prepare_replay(public_traces_dir() / "conversation_trace.jsonl")
    fine = [
        dataclasses.replace(r, keys=expand_keys(r.keys, 32, r.num_tokens, 16)) for r in inp.requests
    ]
    cc16 = dataclasses.replace(inp.config.cache_config, tokens_per_block=16)
    inp16 = dataclasses.replace(
        inp,
        requests=fine,
        recorded_tokens_per_block=16,
        config=dataclasses.replace(inp.config, cache_config=cc16),
    )
    report = {
        "python": platform.python_version(),
        "requests": len(inp.requests),
        "results": [measure(inp, args.repeat), measure(inp16, args.repeat)],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
