"""The twin's remote model against the engine: a profile from `flexkv-run bench remote`
predicts the remote ops of a replay (issue [7]).

For each backend (fs in a temporary directory, redis on a server started on loopback):

1. `flexkv-run bench remote` measures the store with objects of the replay's block size:
   the one-block get and put round trips (p50) and the batched get and put bandwidths.
2. From them, the twin's network curves (`network` for reads, `network_write` for
   writes): bandwidth = the batched GB/s, overhead = one-block round trip - one block's
   bytes / bandwidth (never below 0).
3. `flexkv-run replay --speed max` of a generated multi-turn workload with a CPU tier too
   small for it and the remote tier on that backend records every remote op.
4. Each remote op's time (queue + transfer) is predicted by the curve for its bytes and
   blocks, as the twin's link would take it alone; the relative errors are reported
   (median, p90) with the predicted and measured total time per path.

    python bench/remote_model.py [--requests 60] [--model qwen2.5-7b] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from flexkv_engine.core.paths import REMOTE_READ, REMOTE_WRITE
from flexkv_engine.storage.remote.redis_server import LocalRedisServer
from flexkv_engine.trace import TransferRecord, read_trace


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def curves(bench: dict, block_bytes: int) -> dict[str, dict[str, float]]:
    """Network curves (read and write) from one backend's bench figures."""
    out = {}
    for key, gbps, one in (("read", "get_gbps", "get_one"), ("write", "put_gbps", "put_one")):
        bandwidth = bench[gbps] * 1e9
        rtt = bench["latency_s"][one]["p50"]
        out[key] = {"overhead": max(rtt - block_bytes / bandwidth, 0.0), "bandwidth": bandwidth}
    return out


def compare(ops: list[TransferRecord], curve: dict[str, float]) -> dict[str, float]:
    errors, measured, predicted = [], 0.0, 0.0
    for op in ops:
        real = op.queue_s + op.transfer_s
        model = curve["overhead"] + op.num_bytes / curve["bandwidth"]
        errors.append(abs(model - real) / real)
        measured += real
        predicted += model
    errors.sort()
    return {
        "ops": len(ops),
        "median_rel_err": statistics.median(errors) if errors else float("nan"),
        "p90_rel_err": errors[int(0.9 * (len(errors) - 1))] if errors else float("nan"),
        "measured_total_s": measured,
        "predicted_total_s": predicted,
        "total_rel_err": abs(predicted - measured) / measured if measured else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--model", default="qwen2.5-7b")
    parser.add_argument("--backend", action="append", choices=["fs", "redis"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="flexkv-remote-model-"))
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "chat.jsonl"
    sh("flexkv-sim", "trace", "generate", "--workload", "multiturn", "--requests",
       str(args.requests), "--seed", "4", "--rate", "2", "-o", str(trace))
    report = {}
    for backend in args.backend or ["fs", "redis"]:
        server = None
        if backend == "redis":
            if shutil.which("redis-server") is None:
                print("redis: skipped, redis-server not installed", file=sys.stderr)
                continue
            server = LocalRedisServer()
            server.start()
        try:
            url = str(out / "store") if backend == "fs" else server.url  # type: ignore[union-attr]
            bench_args = ["--backend", backend, "--model", args.model, "--repeat", "3",
                          "--latency-ops", "100", "--json"]
            if server is not None:
                bench_args += ["--redis-url", server.url]
            bench = json.loads(sh("flexkv-run", "bench", "remote", *bench_args))
            block = bench["layout"]["stride"]
            model = curves(bench["backends"][backend], block)
            run = out / f"run-{backend}"
            sets = [f"model_config.model={args.model}", "cache_config.num_cpu_blocks=64",
                    "cache_config.num_remote_blocks=100000",
                    f"cache_config.remote_backend={backend}", f"cache_config.remote_url={url}"]
            summary = json.loads(sh("flexkv-run", "replay", str(trace), "--device", "cpu",
                                    "--speed", "max", "--out", str(run), "--json",
                                    *[a for s in sets for a in ("--set", s)]))
            if summary["integrity_failures"]:
                sys.exit(f"{backend}: {summary['integrity_failures']} integrity failures")
            ops = [r for r in read_trace(run / "trace.jsonl") if isinstance(r, TransferRecord)]
            report[backend] = {
                "profile": model,
                "hit_rate_remote": summary["hit_rate_by_tier"]["remote"],
                "read": compare([o for o in ops if o.path == REMOTE_READ], model["read"]),
                "write": compare([o for o in ops if o.path == REMOTE_WRITE], model["write"]),
            }
        finally:
            if server is not None:
                server.close()
    (out / "remote_model.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"out": str(out), **report}, indent=2))


if __name__ == "__main__":
    main()
