"""Transfer timelines as Chrome traces, from the engine and from the twin."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_engine.timeline import write_chrome_trace
from flexkv_engine.trace import TransferRecord
from flexkv_sim.cli import main as sim_main
from flexkv_sim.workloads import generate, write_trace

TINY = ["model_config.num_layers=1", "model_config.num_kv_heads=1",
        "model_config.head_size=16", "model_config.dtype=float16"]


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "chat.jsonl"
    header, records = generate("multiturn", requests=40, seed=5, rate=4.0)
    write_trace(path, header, records)
    return path


def check_trace(path: Path, process_name: str) -> tuple[list[dict], dict[int, str]]:
    """Loads, is well formed; returns the complete events and the track names."""
    trace = json.loads(path.read_text())
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    meta = [e for e in events if e["ph"] == "M"]
    spans = [e for e in events if e["ph"] == "X"]
    assert len(meta) + len(spans) == len(events)
    assert {e["args"]["name"] for e in meta if e["name"] == "process_name"} == {process_name}
    tracks = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert len(set(tracks.values())) == len(tracks)  # one track per path
    assert {e["tid"] for e in spans} == set(tracks)  # and only the paths used
    for e in spans:
        assert tracks[e["tid"]] == e["name"]
        assert e["ts"] >= 0 and e["dur"] >= 0 and e["pid"] == 1
        assert {"request_id", "op_id", "bytes", "blocks", "queue_us"} <= set(e["args"])
    starts = [e["ts"] for e in spans]
    assert starts == sorted(starts)
    return spans, tracks


def test_write_chrome_trace_matches_the_records(tmp_path) -> None:
    records = [
        TransferRecord("b", 1, "h2d", 4096, 2, t_submit=0.010, queue_s=0.002, transfer_s=0.003,
                       deps=(0,)),
        TransferRecord("a", 0, "ssd_read", 8192, 4, t_submit=0.001, queue_s=0.0,
                       transfer_s=0.0085),
        TransferRecord("a", 1, "h2d", 8192, 4, t_submit=0.0095, queue_s=0.0, transfer_s=0.001,
                       deps=(0,)),
    ]
    out = write_chrome_trace(records, tmp_path / "sub" / "t.json", process_name="unit")
    spans, tracks = check_trace(out, "unit")
    assert sorted(tracks.values()) == ["h2d", "ssd_read"]
    by_key = {(e["args"]["request_id"], e["args"]["op_id"]): e for e in spans}
    for r in records:
        e = by_key[(r.request_id, r.op_id)]
        assert e["ts"] == pytest.approx((r.t_submit + r.queue_s) * 1e6)
        assert e["dur"] == pytest.approx(r.transfer_s * 1e6)
        assert e["args"]["queue_us"] == pytest.approx(r.queue_s * 1e6)
        assert (e["args"]["bytes"], e["args"]["blocks"]) == (r.num_bytes, r.num_blocks)
        assert e["args"]["deps"] == list(r.deps)


def test_empty_timeline_is_valid(tmp_path) -> None:
    trace = json.loads(write_chrome_trace([], tmp_path / "e.json", process_name="x").read_text())
    assert [e["ph"] for e in trace["traceEvents"]] == ["M"]


def test_twin_timing_replay_writes_its_transfers(workload, tmp_path) -> None:
    from flexkv_engine.replay_input import prepare_replay
    from flexkv_sim.hardware import DEFAULT_PROFILES, load_profiles
    from flexkv_sim.replay.timing import replay_timing

    overrides = [*TINY, "cache_config.num_cpu_blocks=120"]
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(sim_main, [
        "replay", str(workload), "--mode", "timing", "--json", "--timeline", str(out),
        *sets(*overrides),
    ])
    assert result.exit_code == 0, result.output
    spans, tracks = check_trace(out, "flexkv-sim")
    summary = json.loads(result.stdout)  # --json: the summary alone on stdout
    assert summary["requests"] == 40
    # The same replay in the library: the records it keeps are what the file holds.
    inp = prepare_replay(str(workload), overrides=tuple(overrides))
    timed = replay_timing(inp, load_profiles(DEFAULT_PROFILES), record_transfers=True)
    assert timed.transfers is not None and len(timed.transfers) == len(spans) > 0
    ops = Counter(r.path for r in timed.transfers)
    assert ops == Counter(e["name"] for e in spans)
    assert {"h2d", "d2h"} <= set(tracks.values())
    stats = timed.planner.stats
    for path, count in ops.items():
        assert count == stats.ops_by_path[path]
        blocks = sum(r.num_blocks for r in timed.transfers if r.path == path)
        assert blocks == stats.blocks_by_path[path]
    durations = sorted(e["dur"] for e in spans)
    assert durations == pytest.approx(sorted(r.transfer_s * 1e6 for r in timed.transfers))
    # Off by default: nothing recorded.
    assert replay_timing(inp, load_profiles(DEFAULT_PROFILES)).transfers is None


def test_timeline_needs_timing_mode(workload, tmp_path) -> None:
    result = CliRunner().invoke(sim_main, [
        "replay", str(workload), "--timeline", str(tmp_path / "x.json"), *sets(*TINY),
    ])
    assert result.exit_code != 0 and "--mode timing" in result.output


def test_engine_replay_writes_its_transfers(workload, tmp_path) -> None:
    pytest.importorskip("torch")
    from flexkv_engine.cli import main as run_main
    from flexkv_engine.timeline import read_transfers

    out, run_dir = tmp_path / "run.json", tmp_path / "run"
    result = CliRunner().invoke(run_main, [
        "replay", str(workload), "--speed", "max", "--device", "cpu", "--json",
        "--out", str(run_dir), "--timeline", str(out),
        *sets(*TINY, "cache_config.num_cpu_blocks=120"),
    ])
    assert result.exit_code == 0, result.output
    spans, tracks = check_trace(out, "flexkv-run")
    records = read_transfers(run_dir / "trace.jsonl")
    assert len(records) == len(spans) > 0
    assert set(tracks.values()) == {r.path for r in records}
    by_key = {(e["args"]["request_id"], e["args"]["op_id"], e["ts"]): e for e in spans}
    for r in records:
        e = by_key[(r.request_id, r.op_id, (r.t_submit + r.queue_s) * 1e6)]
        assert e["dur"] == pytest.approx(r.transfer_s * 1e6)
        assert e["args"]["bytes"] == r.num_bytes
    # Without --out the timeline still comes from a (temporary) tracer file.
    out2 = tmp_path / "run2.json"
    result = CliRunner().invoke(run_main, [
        "replay", str(workload), "--speed", "max", "--device", "cpu", "--json",
        "--timeline", str(out2), *sets(*TINY, "cache_config.num_cpu_blocks=120"),
    ])
    assert result.exit_code == 0, result.output
    spans2, _ = check_trace(out2, "flexkv-run")
    assert len(spans2) == len(spans)
