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
from flexkv_sim.cli import main as sim_main
from flexkv_sim.workloads import generate, write_trace

TINY = ["model_config.num_layers=1", "model_config.num_kv_heads=1",
        "model_config.head_size=16", "model_config.dtype=float16"]


def record_run(tmp_path, name: str, seed: int, extra: list[str]):
    trace = tmp_path / f"{name}.jsonl"
    header, records = generate("multiturn", requests=150, seed=seed, rate=4.0)
    write_trace(trace, header, records)
    out = tmp_path / name
    result = CliRunner().invoke(run_main, [
        "replay", str(trace), "--device", "cpu", "--speed", "max", "--out", str(out), "--json",
        *[a for o in [*TINY, *extra] for a in ("--set", o)],
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["integrity_failures"] == 0
    return out


def test_calibrate_then_predict_a_different_run(tmp_path) -> None:
    train = record_run(tmp_path, "train", 1, ["cache_config.num_cpu_blocks=200"])
    held_out = record_run(tmp_path, "test", 2, ["cache_config.num_cpu_blocks=400",
                                                "cache_config.tokens_per_block=32"])
    profile = tmp_path / "fitted.yaml"
    fitted = CliRunner().invoke(sim_main, ["calibrate", str(train), "-o", str(profile)])
    assert fitted.exit_code == 0, fitted.output
    assert "h2d" in fitted.output and "d2h" in fitted.output
    result = CliRunner().invoke(sim_main, [
        "validate", "--measured", str(held_out), "--profile", str(profile), "--json",
        "--out", str(tmp_path / "val"),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["hit_rate_abs_err"] == 0.0
    assert report["block_agreement"] == 1.0
    for key in ("get_latency_p50_rel_err", "get_latency_p90_rel_err", "ttft_p50_rel_err"):
        assert report[key] is not None and 0.0 <= report[key] < 3.0, (key, report[key])
    assert (tmp_path / "val" / "validation.html").exists()


def test_calibrate_without_transfers_is_a_clear_error(tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    header, records = generate("multiturn", requests=5, seed=1, rate=4.0)
    write_trace(trace, header, records)
    result = CliRunner().invoke(sim_main, ["calibrate", str(trace), "-o", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "no transfer records" in result.stderr
