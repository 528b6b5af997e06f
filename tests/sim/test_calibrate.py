"""Calibrate on one engine run, validate on another (CPU pool, ``--device cpu``).

The tight targets live in ``bench/calibration.py``; here the pipeline must work end to
end, hit rates must agree exactly, and latency errors stay under a loose bound (a shared
CI machine is noisy).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner

from flexkv_engine.cli import main as run_main
from flexkv_sim.calibrate.estimate import OpSample, alone_times, fit_curve
from flexkv_sim.calibrate.fit import RunData, calibrate
from flexkv_sim.cli import main as sim_main
from flexkv_sim.hardware import load_profiles
from flexkv_sim.workloads import generate, write_trace

TINY = [
    "model_config.num_layers=1",
    "model_config.num_kv_heads=1",
    "model_config.head_size=16",
    "model_config.dtype=float16",
]


def record_run(tmp_path, name: str, seed: int, extra: list[str]):
    trace = tmp_path / f"{name}.jsonl"
    header, records = generate("multiturn", requests=150, seed=seed, rate=4.0)
    write_trace(trace, header, records)
    out = tmp_path / name
    result = CliRunner().invoke(
        run_main,
        [
            "replay",
            str(trace),
            "--device",
            "cpu",
            "--speed",
            "max",
            "--out",
            str(out),
            "--json",
            *[a for o in [*TINY, *extra] for a in ("--set", o)],
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["integrity_failures"] == 0
    return out


def test_calibrate_then_predict_a_different_run(tmp_path) -> None:
    train = record_run(tmp_path, "train", 1, ["cache_config.num_cpu_blocks=200"])
    held_out = record_run(
        tmp_path, "test", 2, ["cache_config.num_cpu_blocks=400", "cache_config.tokens_per_block=32"]
    )
    profile = tmp_path / "fitted.yaml"
    fitted = CliRunner().invoke(sim_main, ["calibrate", str(train), "-o", str(profile)])
    assert fitted.exit_code == 0, fitted.output
    assert "h2d" in fitted.output and "d2h" in fitted.output
    result = CliRunner().invoke(
        sim_main,
        [
            "validate",
            "--measured",
            str(held_out),
            "--profile",
            str(profile),
            "--json",
            "--out",
            str(tmp_path / "val"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["hit_rate_abs_err"] == 0.0
    assert report["block_agreement"] == 1.0
    for key in ("get_latency_p50_rel_err", "get_latency_p90_rel_err", "ttft_p50_rel_err"):
        assert report[key] is not None and 0.0 <= report[key] < 3.0, (key, report[key])
    assert (tmp_path / "val" / "validation.html").exists()
    assert {"h2d", "d2h"} <= set(report["ops_by_path"])
    # Several runs pool their ops into one fit.
    both = tmp_path / "both.yaml"
    pooled = CliRunner().invoke(sim_main, ["calibrate", str(train), str(held_out), "-o", str(both)])
    assert pooled.exit_code == 0, pooled.output
    profile = load_profiles([str(both)])
    assert profile.h2d.sm.bandwidth > 0 and profile.h2d.sm.jitter >= 0


def test_calibrate_without_transfers_is_a_clear_error(tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    header, records = generate("multiturn", requests=5, seed=1, rate=4.0)
    write_trace(trace, header, records)
    result = CliRunner().invoke(sim_main, ["calibrate", str(trace), "-o", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "no transfer records" in result.stderr


def noisy_ops(
    seed, *, overhead, bandwidth, sigma, block=1 << 17, queue_depth=16, half_qd=0.0,
    outliers=0.05, per_io=None,
):
    """Ops of 1..600 blocks timed by the profile's model, log-normal noise and a few bursts.
    With ``per_io``, each op's blocks merge into a random number of I/Os, each costing
    ``per_io`` seconds, and the samples carry that count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = np.unique(np.geomspace(1, 600, 400).astype(int))
    blocks = rng.choice(blocks, 600)
    out = []
    for n in blocks:
        q = min(n, queue_depth)
        ios = int(rng.integers(-(-n // 8), n + 1)) if per_io is not None else 0
        t = overhead + n * block / bandwidth * (1 + half_qd / q) + ios * (per_io or 0.0)
        t *= rng.lognormal(0.0, sigma) * (5.0 if rng.random() < outliers else 1.0)
        out.append(OpSample(int(n * block), int(n), queue_depth, float(t), ios))
    return out


def test_fit_recovers_the_curve_through_noise_and_bursts() -> None:
    fit = fit_curve(noisy_ops(1, overhead=5e-4, bandwidth=1e9, sigma=0.15), ssd=False)
    assert fit.overhead_s == pytest.approx(5e-4, rel=0.15)
    assert fit.bandwidth == pytest.approx(1e9, rel=0.05)
    assert fit.jitter == pytest.approx(0.15, abs=0.03)


def test_ssd_queue_depth_term_comes_from_runs_at_different_depths() -> None:
    model = {"overhead": 2e-4, "bandwidth": 2e9, "sigma": 0.05, "half_qd": 4.0, "outliers": 0}
    shallow = noisy_ops(2, queue_depth=4, **model)
    deep = noisy_ops(3, queue_depth=32, **model)
    fit = fit_curve(shallow + deep, ssd=True)
    assert fit.qd_identified
    assert fit.half_qd == pytest.approx(4.0, rel=0.2)
    assert fit.bandwidth == pytest.approx(2e9, rel=0.1)
    one = fit_curve(deep, ssd=True)  # one depth: that depth's curve, no queue-depth term
    assert not one.qd_identified and one.half_qd == 0.0


def test_ssd_per_io_cost_comes_from_how_well_each_op_merged() -> None:
    model = {"overhead": 3e-4, "bandwidth": 1.5e9, "sigma": 0.05, "outliers": 0.02}
    fit = fit_curve(noisy_ops(4, per_io=40e-6, **model), ssd=True)
    assert fit.per_io_s == pytest.approx(40e-6, rel=0.15)
    assert fit.bandwidth == pytest.approx(1.5e9, rel=0.1)
    assert fit.overhead_s == pytest.approx(3e-4, rel=0.3)
    # Ops without I/O counts (older traces): no per-I/O term, said so.
    assert fit_curve(noisy_ops(4, **model), ssd=True).per_io_s is None
    # PCIe paths never get one.
    assert fit_curve(noisy_ops(4, per_io=40e-6, **model), ssd=False).per_io_s is None


def test_alone_times_undo_sharing_and_queueing() -> None:
    # Two ops sharing a path for 2 s each took 1 s alone; one queued behind the other
    # (FIFO) keeps its own service time plus the path's dispatch latency (here 0.1 s).
    shared = alone_times([(0.0, 0.0, 2.0), (0.0, 0.0, 2.0)])
    assert shared == pytest.approx([1.0, 1.0])
    fifo = alone_times([(0.0, 0.1, 1.0), (0.2, 0.9, 1.0), (5.0, 0.1, 1.0)])
    assert fifo == pytest.approx([1.1, 1.1, 1.1])


def test_compute_model_is_fitted_from_measured_prefills(tmp_path) -> None:
    import pandas as pd

    rows = []
    for i, (tokens, cached) in enumerate(
        [(1000, 0), (2000, 500), (4000, 3000), (3000, 0), (500, 100), (8000, 4000)]
    ):
        new = tokens - cached
        prefill = 2e-3 + 1e-5 * new + 1e-9 * new * tokens
        rows.append(
            {
                "request_id": f"r{i}",
                "num_tokens": tokens,
                "gpu_tokens": 0,
                "cpu_tokens": cached,
                "ssd_tokens": 0,
                "remote_tokens": 0,
                "prefill_s": prefill,
                "decode_s": 0.05,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "requests.csv", index=False)
    from flexkv_engine.trace import TransferRecord

    op = TransferRecord("r0", 0, "h2d", 1 << 20, 1, 0.0, 0.0, 1e-3)
    run = RunData(
        tmp_path, tmp_path / "trace.jsonl", None, None, [op], [], {f"r{i}": 10 for i in range(6)}
    )
    doc, _ = calibrate(run)
    compute = doc["compute"]
    assert compute["prefill_fixed"] == pytest.approx(2e-3, rel=1e-6)
    assert compute["prefill_per_token"] == pytest.approx(1e-5, rel=1e-6)
    assert compute["prefill_quadratic"] == pytest.approx(1e-9, rel=1e-6)
    assert compute["decode_step"] == pytest.approx(5e-3)
