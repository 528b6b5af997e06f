"""The twin under load: paced replays on this machine, calibrated on some, held out others.

1. Two workloads generated at ``--rate`` requests per second: A (multi-turn chat, seed 1)
   for calibration, H (RAG, seed 7) held out.
2. Record A with config A (CPU 300 blocks, SSD queue depth 32) at the speeds of
   ``--calibration-speeds`` (1x and 8x of its rate: one light run, one loaded enough for
   the copies of both directions to overlap) through ``flexkv-run replay --speed X
   --prefill model``, and fit one profile from them (``flexkv-sim calibrate``).
3. Record H with config B (CPU 600 blocks, queue depth 16) at every speed of
   ``--speeds`` (by default 1x to 16x: the highest saturates this machine's SSD and
   copies), and once more at ``--noise-speed`` (the noise floor: the same run recorded
   twice).
4. Predict each H run with the twin (``flexkv-sim validate``): hit rate per tier, GET
   latency and TTFT percentiles, queueing per path, throughput, and the requests whose
   hits differ with the reason; and the throughput knee, the request rate at which GET
   p90 doubles from the lightest load, measured against predicted.
5. Predict each H run once more with the profile less its ``interpreter`` section (the
   engine's host CPU model, calibrate/host.py): the same errors without it, side by side.

The prefill compute model is the Llama-3-8B prefill measured on an H100 (bench/RESULTS.md,
"Prefill compute profile"), emulated by the engine as a timed wait. With ``--device cpu``
(the default) the KV layout is the small one of bench/calibration.py (64 KiB per 16
tokens) so that the runs fit this machine; with ``--device cuda`` it is the config's
default, Llama-3-8B (2 MiB per 16 tokens), with CPU tiers of 600 and 1,200 blocks.
``--tiers cpu`` leaves the SSD tier out of both configs (the copies and the compute
model alone).

    python bench/load.py [--device cpu|cuda] [--requests 300] [--rate 8]
                         [--speeds 1,2,4,8,16] [--calibration-speeds 1,8]
                         [--noise-speed 4] [--tiers cpu+ssd|cpu] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import CONFIG_A, CONFIG_B, LAYOUT, pressure, sh

PREFILL = [
    "serving_config.compute.prefill_fixed_s=7.34e-3",
    "serving_config.compute.prefill_per_token_s=20.95e-6",
    "serving_config.compute.prefill_quadratic_s=2.13e-9",
]
GPU_CONFIG_A = [
    "cache_config.num_cpu_blocks=600",
    "cache_config.num_ssd_blocks=6000",
    "cache_config.ssd_cache_iouring_entries=32",
]
GPU_CONFIG_B = [
    "cache_config.num_cpu_blocks=1200",
    "cache_config.num_ssd_blocks=6000",
    "cache_config.ssd_cache_iouring_entries=16",
]
#: device -> (layout, calibration config, held-out config)
SETUPS = {
    "cpu": (LAYOUT, CONFIG_A, CONFIG_B),
    "cuda": ([], GPU_CONFIG_A, GPU_CONFIG_B),
}
CALIBRATION_SPEEDS = "1,8"
TARGETS = {  # error key -> bound (fractions)
    "hit_rate_abs_err": 0.005,
    "get_latency_p50_rel_err": 0.10,
    "get_latency_p90_rel_err": 0.15,
    "ttft_p50_rel_err": 0.10,
    "ttft_p90_rel_err": 0.15,
}
KNEE_TARGET = 0.15


def cpu_tier_only(config: list[str]) -> list[str]:
    """``config`` without its SSD tier (its ``ssd_*`` keys and SSD capacity)."""
    return [o for o in config if not o.startswith(("cache_config.ssd", "cache_config.num_ssd"))]


def record(out: Path, name: str, trace: Path, config: list[str], speed: float,
           ssd: Path, device: str = "cpu") -> dict[str, Any]:
    run = out / name
    shutil.rmtree(ssd, ignore_errors=True)
    layout = SETUPS[device][0]
    disk = [f"cache_config.ssd_cache_dir={ssd}"] if config != cpu_tier_only(config) else []
    sets = [a for o in [*layout, *PREFILL, *config, *disk]
            for a in ("--set", o)]
    before, began = pressure(), time.monotonic()
    summary = json.loads(sh(
        "flexkv-run", "replay", str(trace), "--device", device, "--speed", str(speed),
        "--prefill", "model", "--out", str(run), "--json", *sets,
    ))
    wall, after = time.monotonic() - began, pressure()
    shutil.rmtree(ssd, ignore_errors=True)
    if summary["integrity_failures"]:
        sys.exit(f"{name}: {summary['integrity_failures']} integrity failures")
    stalls = {f"{k}_pressure": round((after[k] - before[k]) / 1e6 / wall, 3) for k in after}
    return {"dir": run, "speed": speed, "summary": summary, "wall_s": round(wall, 1), **stalls}


def validate(run: Path, profile: Path, out: Path) -> dict[str, Any]:
    return json.loads(sh("flexkv-sim", "validate", "--measured", str(run), "--profile",
                         str(profile), "--json", "--out", str(out)))


def without_section(profile: Path, section: str, out: Path) -> Path:
    """A copy of the YAML profile ``profile`` without its top-level ``section``."""
    kept, skipping = [], False
    for line in profile.read_text().splitlines(keepends=True):
        if not line[:1].isspace():
            skipping = line.split(":", 1)[0].strip() == section
        if not skipping:
            kept.append(line)
    out.write_text("".join(kept))
    return out


def knee(rates: list[float], p90: list[float]) -> float | None:
    """The rate at which ``p90`` first reaches twice its value at the lowest rate,
    interpolated linearly between the two recorded rates around it."""
    base = p90[0]
    for i in range(1, len(rates)):
        if p90[i] >= 2 * base:
            r0, r1, y0, y1 = rates[i - 1], rates[i], p90[i - 1], p90[i]
            return r0 + (2 * base - y0) * (r1 - r0) / (y1 - y0) if y1 > y0 else r1
    return None


def held_out_row(name: str, speed: float, rate: float, report: dict[str, Any]) -> dict:
    errors = {k: report[k] for k in TARGETS}
    return {
        "run": name, "speed": speed, "rate": rate, **errors,
        "met": all(v is not None and v <= TARGETS[k] for k, v in errors.items()),
        "hit_rate": report["hit_rate"], "latency": report["latency"],
        "block_agreement": report["block_agreement"],
        "order_check": report["order_check"], "hit_differences": report["hit_differences"],
        "queueing_by_path": report["queueing_by_path"], "throughput": report["throughput"],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=sorted(SETUPS), default="cpu")
    parser.add_argument("--requests", type=int, default=300, help="requests of each trace")
    parser.add_argument("--rate", type=float, default=8.0, help="requests/s of the traces (1x)")
    parser.add_argument("--speeds", default="1,2,4,8,16", help="speeds of the held-out runs")
    parser.add_argument("--calibration-speeds", default=CALIBRATION_SPEEDS,
                        help="speeds of the calibration runs")
    parser.add_argument("--noise-speed", type=float, default=4.0,
                        help="the held-out speed recorded twice (the noise floor)")
    parser.add_argument("--ssd-dir", default="/var/tmp/flexkv-bench/load")
    parser.add_argument("--tiers", choices=("cpu+ssd", "cpu"), default="cpu+ssd",
                        help="the tiers of both configs (cpu: no SSD tier)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="flexkv-load-"))
    out.mkdir(parents=True, exist_ok=True)
    ssd = Path(args.ssd_dir)
    speeds = sorted(float(s) for s in args.speeds.split(","))
    _, config_a, config_b = SETUPS[args.device]
    if args.tiers == "cpu":
        config_a, config_b = cpu_tier_only(config_a), cpu_tier_only(config_b)
    for name, workload, seed in (("A", "multiturn", 1), ("H", "rag", 7)):
        sh("flexkv-sim", "trace", "generate", "--workload", workload, "--requests",
           str(args.requests), "--seed", str(seed), "--rate", str(args.rate),
           "-o", str(out / f"{name}.jsonl"))
    calibration = [record(out, f"A-{s:g}x", out / "A.jsonl", config_a, s, ssd, args.device)
                   for s in sorted(float(x) for x in args.calibration_speeds.split(","))]
    profile = out / "fitted.yaml"
    fit = sh("flexkv-sim", "calibrate", *(str(r["dir"]) for r in calibration), "-o", str(profile))
    plain = without_section(profile, "interpreter", out / "fitted-no-interpreter.yaml")
    rows, runs = [], {}
    for s in speeds:
        name = f"H-{s:g}x"
        runs[name] = run = record(out, name, out / "H.jsonl", config_b, s, ssd, args.device)
        report = validate(run["dir"], profile, out / f"validation-{name}")
        rows.append(held_out_row(name, s, s * args.rate, report))
        ablation = validate(run["dir"], plain, out / f"validation-{name}-no-interpreter")
        rows[-1]["without_interpreter"] = held_out_row(name, s, s * args.rate, ablation)
    again = record(out, "H-again", out / "H.jsonl", config_b, args.noise_speed, ssd,
                   args.device)
    first = runs[f"H-{args.noise_speed:g}x"]["summary"]["latency"]
    noise = {
        f"{m}_{q}_rel_diff": abs(again["summary"]["latency"][m][q] - first[m][q]) / first[m][q]
        for m in ("get_s", "ttft_s") for q in ("p50", "p90")
    }
    measured_p90 = [r["latency"]["get_s"]["p90"]["measured"] for r in rows]
    predicted_p90 = [r["latency"]["get_s"]["p90"]["predicted"] for r in rows]
    rates = [r["rate"] for r in rows]
    knee_m, knee_p = knee(rates, measured_p90), knee(rates, predicted_p90)
    knee_err = abs(knee_p - knee_m) / knee_m if knee_m and knee_p else None
    knee_plain = knee(rates, [r["without_interpreter"]["latency"]["get_s"]["p90"]["predicted"]
                              for r in rows])
    result = {
        "out": str(out), "fit": fit, "held_out": rows, "noise_floor": noise,
        "knee": {"measured_rate": knee_m, "predicted_rate": knee_p, "rel_err": knee_err,
                 "met": knee_err is not None and knee_err <= KNEE_TARGET,
                 "predicted_rate_without_interpreter": knee_plain},
        "runs": {n: {k: v for k, v in r.items() if k not in ("dir", "summary")}
                 for n, r in {**{r["dir"].name: r for r in calibration}, **runs,
                              "H-again": again}.items()},
    }
    (out / "load.json").write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    print(fit)
    print("run     rate  hit err  GET p50   p90   TTFT p50   p90  differ  order  met")
    for r in rows:
        print(f"{r['run']:<7} {r['rate']:>5g}  {r['hit_rate_abs_err']:.4f}  "
              f"{r['get_latency_p50_rel_err']:6.1%} {r['get_latency_p90_rel_err']:6.1%}  "
              f"{r['ttft_p50_rel_err']:6.1%} {r['ttft_p90_rel_err']:6.1%}  "
              f"{r['hit_differences']['share']:6.1%}  {r['order_check']['agree']:.3f}  "
              f"{'yes' if r['met'] else 'NO'}")
        w = r["without_interpreter"]
        print(f"  without interpreter: {w['hit_rate_abs_err']:.4f}  "
              f"{w['get_latency_p50_rel_err']:6.1%} {w['get_latency_p90_rel_err']:6.1%}  "
              f"{w['ttft_p50_rel_err']:6.1%} {w['ttft_p90_rel_err']:6.1%}  "
              f"{'yes' if w['met'] else 'NO'}")
    print("noise floor (same run twice):",
          ", ".join(f"{k} {v:.1%}" for k, v in noise.items()))
    print(f"knee (GET p90 doubles): measured {knee_m} req/s, predicted {knee_p} req/s, "
          f"error {knee_err}; without interpreter: predicted {knee_plain} req/s")
    print(f"results in {out / 'load.json'}")


if __name__ == "__main__":
    main()
