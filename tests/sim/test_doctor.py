"""``flexkv-sim doctor``: grading, the causes of a low hit rate, transfers, memory, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_engine.trace import RequestRecord, TraceHeader, TraceWriter
from flexkv_sim.cli import main
from flexkv_sim.doctor import diagnose, effect, grade, nice_blocks, render_text, tier_memory
from flexkv_sim.sweep import load_scenario, scenario_from_dict
from flexkv_sim.sweep.scenario import point_config

TUNING = Path(__file__).resolve().parents[2] / "scenarios" / "tuning"


def ids(report):
    return [s["id"] for s in report["suggestions"]]


def kinds(report):
    return [f["kind"] for f in report["findings"]]


@pytest.fixture(scope="module")
def capacity_before():
    return diagnose(load_scenario(TUNING / "capacity-before.yaml"), timing=False)


@pytest.fixture(scope="module")
def transfer_before():
    return diagnose(load_scenario(TUNING / "transfer-before.yaml"))


@pytest.fixture(scope="module")
def transfer_after():
    return diagnose(load_scenario(TUNING / "transfer-after.yaml"))


def test_grades():
    assert grade(0.81) == "excellent"
    assert grade(0.80) == "good"
    assert grade(0.5) == "good"
    assert grade(0.49) == "needs work"
    assert grade(0.0) == "needs work"
    assert [nice_blocks(n) for n in (0.5, 7, 10, 11, 79537, 120001)] == [
        1,
        10,
        10,
        20,
        100000,
        200000,
    ]


def test_capacity_case_proposes_the_after_changes(capacity_before):
    r = capacity_before
    assert r["grade"] == "needs work"
    assert {"hit_rate", "capacity", "eviction", "memory"} <= set(kinds(r))
    assert "workload_reuse" not in kinds(r)  # the bound is 0.81: reuse is not the problem
    assert r["reuse"]["infinite_cache_hit_rate"] > 0.8
    cap = r["capacity"]
    at = cap["lru_hit_rate"]
    assert at["1x"] < at["2x"] < at["4x"] < at["10x"]
    assert 10000 < cap["blocks_for_90pct"] <= 100000
    by_id = {s["id"]: s for s in r["suggestions"]}
    raise_cpu = by_id["raise_cpu_blocks"]["changes"]["cache_config.num_cpu_blocks"]
    assert raise_cpu > 10000
    assert by_id["enable_ssd"]["changes"]["cache_config.enable_ssd"] is True
    assert by_id["eviction"]["changes"] == {"cache_config.evict_ratio": 0.05}
    for sid in ("raise_cpu_blocks", "enable_ssd", "all_hit_rate"):
        s = by_id[sid]
        assert s["metric"] == "hit_rate" and s["predicted"] is True
        assert s["before"] == pytest.approx(r["hit_rate"])
        assert s["after"] - s["before"] >= 0.2
    assert by_id["all_hit_rate"]["after"] >= 0.6
    text = render_text(r)
    assert f"hit rate {r['hit_rate']:.2f} -> " in text and "(predicted)" in text
    assert effect(by_id["raise_cpu_blocks"]).startswith("hit rate 0.29 -> ")


def test_transfer_case_proposes_copy_engine_or_more_sms(transfer_before):
    r = transfer_before
    h2d = r["transfers"]["paths"]["h2d"]
    assert h2d["ok"] is True and h2d["per_block_mean_s"] < 0.010
    latency = [s for s in r["suggestions"] if s["mode"] == "timing"]
    assert {s["id"] for s in latency} == {"copy_engine", "transfer_sms"}
    for s in latency:
        assert s["metric"] == "h2d_op_mean_s"
        assert s["after"] / s["before"] <= 0.8
    by_id = {s["id"]: s for s in latency}
    assert by_id["copy_engine"]["changes"]["cache_config.use_ce_transfer_h2d"] is True
    assert by_id["transfer_sms"]["changes"]["cache_config.transfer_sms_h2d"] == 16
    assert "H2D latency per op" in render_text(r)


def test_copy_engine_on_says_sms_do_not_matter(transfer_after):
    r = transfer_after
    notes = [f for f in r["findings"] if f["kind"] == "copy_engine"]
    assert {f["path"] for f in notes} == {"h2d", "d2h"}
    assert all("no longer matters" in f["message"] for f in notes)
    check = next(f for f in notes if f["path"] == "h2d")["sms_check"]
    assert check["h2d_op_mean_s"][0] == pytest.approx(check["h2d_op_mean_s"][1], rel=1e-12)
    assert "copy_engine" not in ids(r) and "transfer_sms" not in ids(r)


def _trace(path, requests, tpb=16):
    with TraceWriter(path, TraceHeader(1, "test", tpb)) as w:
        for r in requests:
            w.write(r)
    return path


def _scenario(tmp_path, trace, cache, mode="hitrate"):
    return scenario_from_dict(
        {"schema_version": 1, "trace": str(trace), "config": {"cache_config": cache}, "mode": mode},
        base_dir=tmp_path,
    )


def test_no_reuse_is_the_workload_not_the_cache(tmp_path):
    reqs = [
        RequestRecord(
            t=i * 0.1,
            op="get",
            request_id=f"r{i}",
            num_tokens=64,
            keys=[1000 * i + k for k in range(4)],
        )
        for i in range(200)
    ]
    trace = _trace(tmp_path / "unique.jsonl", reqs)
    r = diagnose(
        _scenario(tmp_path, trace, {"num_cpu_blocks": 16, "evict_ratio": 0.0}), timing=False
    )
    assert r["hit_rate"] == 0.0 and r["grade"] == "needs work"
    assert r["reuse"]["infinite_cache_hit_rate"] == 0.0
    assert "workload_reuse" in kinds(r)
    assert not any(f["kind"] == "capacity" and f["severity"] == "warning" for f in r["findings"])
    assert "raise_cpu_blocks" not in ids(r) and "enable_ssd" not in ids(r)
    assert r["suggestions"] == []


def test_full_reuse_is_excellent(tmp_path):
    reqs = [
        RequestRecord(t=i * 0.1, op="get", request_id=f"r{i}", num_tokens=64, keys=[1, 2, 3, 4])
        for i in range(100)
    ]
    trace = _trace(tmp_path / "same.jsonl", reqs)
    r = diagnose(_scenario(tmp_path, trace, {"num_cpu_blocks": 64}), timing=False)
    assert r["hit_rate"] == pytest.approx(0.99)
    assert r["grade"] == "excellent"
    assert r["suggestions"] == []


def test_block_size_predicted_at_the_recorded_size(tmp_path):
    # Requests share a 40-token prefix: 2.5 blocks of 16, 0.625 of 64.
    reqs = []
    for i in range(100):
        keys = [11, 12, 5000 + i] if i else [11, 12, 13]
        reqs.append(
            RequestRecord(t=i * 0.1, op="get", request_id=f"r{i}", num_tokens=48, keys=keys)
        )
    trace = _trace(tmp_path / "partial.jsonl", reqs)
    r = diagnose(
        _scenario(tmp_path, trace, {"num_cpu_blocks": 1000, "tokens_per_block": 64}), timing=False
    )
    assert "block_size" in kinds(r)
    s = next(s for s in r["suggestions"] if s["id"] == "block_size")
    assert s["changes"] == {
        "cache_config.tokens_per_block": 16,
        "cache_config.num_cpu_blocks": 4000,
    }
    assert s["before"] < s["after"]


def test_memory_per_tier_is_exact(tmp_path):
    sc = scenario_from_dict(
        {
            "schema_version": 1,
            "workload": {"name": "multiturn", "requests": 10, "seed": 1},
            "config": {
                "model_config": {"model": "qwen2.5-7b"},
                "cache_config": {
                    "tokens_per_block": 32,
                    "num_cpu_blocks": 1000,
                    "num_ssd_blocks": 3000,
                    "enable_ssd": True,
                },
                "serving_config": {"num_gpu_blocks": 512},
            },
        }
    )
    cfg = point_config(sc, {}).resolve()
    mem = tier_memory(cfg)
    per_block = 28 * 2 * 4 * 128 * 2 * 32  # layers x K,V x heads x head size x bf16 x tokens
    assert mem["bytes_per_block"] == per_block == 1835008
    tiers = mem["tiers"]
    assert tiers["cpu"] == {
        "blocks": 1000,
        "bytes": 1000 * per_block,
        "gib": 1000 * per_block / 2**30,
    }
    assert tiers["cpu"]["gib"] == 1.708984375
    assert tiers["ssd"]["gib"] == 3000 * 1835008 / 2**30
    assert tiers["gpu"]["blocks"] == 512 and tiers["remote"]["blocks"] == 0


def test_cli_json_out_and_exit_codes(tmp_path):
    reqs = [
        RequestRecord(
            t=i * 0.1, op="get", request_id=f"r{i}", num_tokens=64, keys=[1, 2, 3, 4 + i % 4]
        )
        for i in range(50)
    ]
    trace = _trace(tmp_path / "t.jsonl", reqs)
    scen = tmp_path / "s.yaml"
    scen.write_text(
        f"schema_version: 1\ntrace: {trace.name}\nconfig: {{cache_config: {{num_cpu_blocks: 4}}}}\n"
    )
    out = tmp_path / "out"
    run = CliRunner().invoke(main, ["doctor", str(scen), "--json", "--out", str(out)])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["kind"] == "doctor" and report["grade"] in ("excellent", "good", "needs work")
    assert "transfers" in report  # timing on by default
    assert json.loads((out / "doctor.json").read_text())["hit_rate"] == report["hit_rate"]
    assert "# FlexKV doctor" in (out / "doctor.md").read_text()
    text = CliRunner().invoke(main, ["doctor", str(scen), "--no-timing"])
    assert text.exit_code == 0 and "hit rate" in text.stdout and "Transfers" not in text.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 2\n")
    assert CliRunner().invoke(main, ["doctor", str(bad)]).exit_code == 2
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        f"schema_version: 1\ntrace: {trace.name}\nconfig: {{cache_config: {{bogus: 1}}}}\n"
    )
    assert CliRunner().invoke(main, ["doctor", str(unknown)]).exit_code == 2
    assert CliRunner().invoke(main, ["doctor", str(tmp_path / "missing.yaml")]).exit_code == 2
