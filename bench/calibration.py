"""Held-out prediction error of the twin against the engine on this machine (issue [5]).

1. Record run A: `flexkv-run replay --speed max` of a generated multi-turn workload with
   config A (CPU pool + SSD tier through io_uring, `--device cpu`).
2. Fit a hardware profile from run A (`flexkv-sim calibrate`).
3. Record the held-out runs, both on a different workload (another seed and workload
   shape): run B changes the CPU capacity and the SSD queue depth; run C changes
   tokens_per_block as well, which one calibration run at one block size cannot see
   (bench/RESULTS.md says why).
4. Predict each with the twin (`flexkv-sim validate`) and report the errors, with the
   per-path op times measured and predicted.

The machine's own noise is reported beside the errors: the CPU and I/O pressure (Linux
PSI, share of time some task was stalled) during each recording, and with
`--noise-floor` a second recording of run B, whose distance from the first is what no
model of this machine could predict.

    python bench/calibration.py [--requests 800] [--calibration-requests 2000]
                                [--ssd-dir /var/tmp/flexkv-bench] [--noise-floor] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAYOUT = [
    "model_config.num_layers=4",
    "model_config.num_kv_heads=4",
    "model_config.head_size=64",
    "model_config.dtype=float16",
]  # 64 KiB per 16 tokens
CONFIG_A = [
    "cache_config.num_cpu_blocks=300",
    "cache_config.num_ssd_blocks=20000",
    "cache_config.ssd_cache_iouring_entries=32",
]
CONFIG_B = [
    "cache_config.num_cpu_blocks=600",
    "cache_config.num_ssd_blocks=20000",
    "cache_config.ssd_cache_iouring_entries=16",
]
CONFIG_C = [*CONFIG_B, "cache_config.tokens_per_block=32"]
HELD_OUT = {"B": CONFIG_B, "C": CONFIG_C}
KEYS = (
    "hit_rate_abs_err",
    "block_agreement",
    "get_latency_p50_rel_err",
    "get_latency_p90_rel_err",
    "get_latency_p99_rel_err",
    "ttft_p50_rel_err",
    "ttft_p90_rel_err",
)


def sh(*args: str) -> str:
    result = subprocess.run(args, check=True, capture_output=True, text=True)
    return result.stdout


def pressure() -> dict[str, float]:
    """Cumulative stall microseconds ("some") of CPU and I/O, where the kernel has PSI."""
    out = {}
    for kind in ("cpu", "io"):
        try:
            line = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
        except OSError:
            continue
        out[kind] = float(line.rsplit("total=", 1)[1])
    return out


def record(out: Path, name: str, trace: Path, config: list[str], ssd: Path) -> dict[str, Any]:
    run = out / name
    shutil.rmtree(ssd, ignore_errors=True)
    sets = [
        a for o in [*LAYOUT, *config, f"cache_config.ssd_cache_dir={ssd}"] for a in ("--set", o)
    ]
    before, began = pressure(), time.monotonic()
    summary = json.loads(
        sh(
            "flexkv-run",
            "replay",
            str(trace),
            "--device",
            "cpu",
            "--speed",
            "max",
            "--out",
            str(run),
            "--json",
            *sets,
        )
    )
    wall, after = time.monotonic() - began, pressure()
    shutil.rmtree(ssd, ignore_errors=True)
    if summary["integrity_failures"]:
        sys.exit(f"{name}: {summary['integrity_failures']} integrity failures")
    stalls = {f"{k}_pressure": round((after[k] - before[k]) / 1e6 / wall, 3) for k in after}
    return {"dir": run, "get_s": summary["latency"]["get_s"], "wall_s": round(wall, 1), **stalls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=800, help="requests of each held-out run")
    parser.add_argument(
        "--calibration-requests",
        type=int,
        default=2000,
        help="requests of run A: a longer calibration run averages more of the machine's drift",
    )
    parser.add_argument("--ssd-dir", default="/var/tmp/flexkv-bench/calibration")
    parser.add_argument(
        "--noise-floor",
        action="store_true",
        help="record run B twice and report how far the two differ",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="flexkv-calibration-"))
    out.mkdir(parents=True, exist_ok=True)
    ssd = Path(args.ssd_dir)
    calibration = str(args.calibration_requests)
    traces = {
        "A": ["--workload", "multiturn", "--requests", calibration, "--seed", "1"],
        "B": ["--workload", "agent", "--requests", str(args.requests), "--seed", "7"],
    }
    for name, workload in traces.items():
        sh("flexkv-sim", "trace", "generate", *workload, "-o", str(out / f"{name}.jsonl"))
    run_a = record(out, "A", out / "A.jsonl", CONFIG_A, ssd)
    profile = out / "fitted.yaml"
    fit = sh("flexkv-sim", "calibrate", str(run_a["dir"]), "-o", str(profile))
    runs = {"A": run_a}
    result: dict[str, Any] = {"out": str(out), "held_out": {}}
    for name, config in HELD_OUT.items():
        runs[name] = run = record(out, name, out / "B.jsonl", config, ssd)
        report = json.loads(
            sh(
                "flexkv-sim",
                "validate",
                "--measured",
                str(run["dir"]),
                "--profile",
                str(profile),
                "--json",
                "--out",
                str(out / f"validation-{name}"),
            )
        )
        result["held_out"][name] = {
            "config": config,
            **{k: report[k] for k in KEYS},
            "latency": report["latency"],
            "hit_rate": report["hit_rate"],
            "ops_by_path": report["ops_by_path"],
        }
    if args.noise_floor:
        runs["B-again"] = again = record(out, "B-again", out / "B.jsonl", CONFIG_B, ssd)
        result["noise_floor"] = {
            f"get_latency_{q}_rel_diff": abs(again["get_s"][q] - runs["B"]["get_s"][q])
            / runs["B"]["get_s"][q]
            for q in ("p50", "p90", "p99")
        }
    result["runs"] = {
        name: {k: v for k, v in r.items() if k != "dir"} for name, r in runs.items()
    }
    print(fit)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
