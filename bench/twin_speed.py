"""Twin speed: requests per second of wall time of ``flexkv-sim replay`` in both modes.

Replays the Mooncake conversation trace (12,031 requests) with a CPU tier of 3e6 tokens
(5,859 blocks of 512 tokens) on the default hardware profiles, in hit-rate mode and in
timing mode, and prints a JSON report (hit rates, GETs that found blocks in flight,
wall time, requests per second). Reference: Dynamo's trace replayer published 23,608
requests in 2.41 s (about 9,800 per second).

    python bench/twin_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform

from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.trace import public_traces_dir
from flexkv_sim.hardware import DEFAULT_PROFILES, load_profiles
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.replay.timing import replay_timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=5859)
    args = parser.parse_args()
    inp = prepare_replay(
        public_traces_dir() / "conversation_trace.jsonl",
        overrides=[f"cache_config.num_cpu_blocks={args.blocks}"],
    )
    profile = load_profiles(DEFAULT_PROFILES)
    n = len(inp.requests)
    hit = min(
        (replay_hitrate(inp, progress=False) for _ in range(args.repeat)), key=lambda r: r.wall_s
    )
    timed = min(
        (replay_timing(inp, profile, progress=False) for _ in range(args.repeat)),
        key=lambda r: r.wall_s,
    )
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "requests": n,
                "load_s": round(inp.load_s, 3),
                "hitrate": {
                    "hit_rate": round(hit.planner.stats.hit_rate, 4),
                    "wall_s": round(hit.wall_s, 3),
                    "requests_per_s": round(n / hit.wall_s),
                },
                "timing": {
                    "hit_rate": round(timed.planner.stats.hit_rate, 4),
                    "gets_in_flight": timed.planner.stats.gets_in_flight,
                    "wall_s": round(timed.wall_s, 3),
                    "requests_per_s": round(n / timed.wall_s),
                    "simulated_span_s": round(timed.span_s, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
