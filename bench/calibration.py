"""Held-out prediction error of the twin against the engine on this machine (issue [5]).

1. Record run A: `flexkv-run replay --speed max` of a generated multi-turn workload with
   config A (CPU pool + SSD tier through io_uring, `--device cpu`).
2. Fit a hardware profile from run A (`flexkv-sim calibrate`).
3. Record run B: a different workload (another seed and workload shape) and a different
   config (CPU capacity, SSD queue depth and tokens_per_block changed).
4. Predict run B with the twin (`flexkv-sim validate`) and report the errors.

    python bench/calibration.py [--requests 800] [--ssd-dir /var/tmp/flexkv-bench] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LAYOUT = ["model_config.num_layers=4", "model_config.num_kv_heads=4",
          "model_config.head_size=64", "model_config.dtype=float16"]  # 64 KiB per 16 tokens


def sh(*args: str) -> str:
    result = subprocess.run(args, check=True, capture_output=True, text=True)
    return result.stdout


def record(out: Path, name: str, workload: list[str], config: list[str], ssd: Path) -> Path:
    trace = out / f"{name}.jsonl"
    sh("flexkv-sim", "trace", "generate", *workload, "-o", str(trace))
    run = out / name
    shutil.rmtree(ssd, ignore_errors=True)
    sets = [a for o in [*LAYOUT, *config, f"cache_config.ssd_cache_dir={ssd}"]
            for a in ("--set", o)]
    summary = json.loads(sh("flexkv-run", "replay", str(trace), "--device", "cpu",
                            "--speed", "max", "--out", str(run), "--json", *sets))
    if summary["integrity_failures"]:
        sys.exit(f"{name}: {summary['integrity_failures']} integrity failures")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--ssd-dir", default="/var/tmp/flexkv-bench/calibration")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="flexkv-calibration-"))
    out.mkdir(parents=True, exist_ok=True)
    ssd = Path(args.ssd_dir)
    n = str(args.requests)
    run_a = record(out, "A", ["--workload", "multiturn", "--requests", n, "--seed", "1"],
                   ["cache_config.num_cpu_blocks=300", "cache_config.num_ssd_blocks=20000",
                    "cache_config.ssd_cache_iouring_entries=32"], ssd)
    profile = out / "fitted.yaml"
    fit = sh("flexkv-sim", "calibrate", str(run_a), "-o", str(profile))
    run_b = record(out, "B", ["--workload", "agent", "--requests", n, "--seed", "7"],
                   ["cache_config.num_cpu_blocks=600", "cache_config.num_ssd_blocks=20000",
                    "cache_config.ssd_cache_iouring_entries=16",
                    "cache_config.tokens_per_block=32"], ssd)
    report = json.loads(sh("flexkv-sim", "validate", "--measured", str(run_b), "--profile",
                           str(profile), "--json", "--out", str(out / "validation")))
    shutil.rmtree(ssd, ignore_errors=True)
    keys = ("hit_rate_abs_err", "block_agreement", "get_latency_p50_rel_err",
            "get_latency_p90_rel_err", "get_latency_p99_rel_err", "ttft_p50_rel_err",
            "ttft_p90_rel_err")
    print(fit)
    print(json.dumps({"out": str(out), **{k: report[k] for k in keys},
                      "latency": report["latency"], "hit_rate": report["hit_rate"]}, indent=2))


if __name__ == "__main__":
    main()
