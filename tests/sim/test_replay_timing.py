"""``flexkv-sim replay --mode timing``: agreement with hit-rate mode, hand-computed latency."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.trace import RequestRecord, TraceHeader, TraceWriter, public_traces_dir
from flexkv_sim.cli import main
from flexkv_sim.hardware import load_profiles
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.replay.timing import TIMING_COLUMNS, replay_timing
from flexkv_sim.workloads import generate, write_trace

PROFILE = """\
schema_version: 1
name: hand
pcie:
  h2d: {sm: {overhead: 10us, bandwidth: 40GB/s}, sm_bandwidth_per_sm: 10GB/s,
        ce: {overhead: 20us, per_copy: 5us, bandwidth: 50GB/s}}
  d2h: {sm: {overhead: 10us, bandwidth: 40GB/s}, sm_bandwidth_per_sm: 10GB/s,
        ce: {overhead: 20us, per_copy: 5us, bandwidth: 50GB/s}}
  duplex_bandwidth: 60GB/s
ssd:
  read: {overhead: 100us, bandwidth: 8GB/s, half_bandwidth_queue_depth: 8}
  write: {overhead: 50us, bandwidth: 4GB/s, half_bandwidth_queue_depth: 8}
network: {overhead: 200us, bandwidth: 2GB/s}
compute: {prefill_fixed: 1ms, prefill_per_token: 10us, prefill_quadratic: 0, decode_step: 5ms}
match: 30us
"""
COL = {name: i for i, name in enumerate(TIMING_COLUMNS)}


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "hand.yaml"
    path.write_text(PROFILE)
    return load_profiles([str(path)])


def write_requests(path, requests, tokens_per_block=16):
    with TraceWriter(path, TraceHeader(1, "test", tokens_per_block)) as writer:
        for record in requests:
            writer.write(record)
    return path


def spread_out(path, tmp_path, gap=1000.0):
    """The trace at ``path`` with requests ``gap`` seconds apart (no overlap at all)."""
    inp = prepare_replay(path)
    requests = [replace(r, t=i * gap) for i, r in enumerate(inp.requests)]
    return write_requests(tmp_path / "spread.jsonl", requests, inp.header.tokens_per_block)


@pytest.mark.parametrize(
    "overrides",
    [
        ["cache_config.num_cpu_blocks=300"],
        ["cache_config.num_cpu_blocks=120", "cache_config.num_ssd_blocks=600",
         "serving_config.num_gpu_blocks=64"],
        ["cache_config.num_cpu_blocks=80", "cache_config.num_ssd_blocks=200",
         "cache_config.num_remote_blocks=5000", "cache_config.eviction_policy=slru"],
    ],
)
def test_timing_and_hitrate_agree_block_for_block_without_overlap(
    tmp_path, profile, overrides
) -> None:
    header, records = generate("multiturn", requests=150, seed=3, rate=1.0)
    trace = tmp_path / "w.jsonl"
    write_trace(trace, header, records)
    trace = spread_out(trace, tmp_path)
    inp = prepare_replay(trace, overrides=overrides)
    fast = replay_hitrate(inp, progress=False)
    timed = replay_timing(inp, profile, progress=False)
    hits = slice(COL["gpu_tokens"], COL["in_flight"] + 1)
    assert [r[hits] for r in timed.records] == [r[hits] for r in fast.records]
    assert timed.planner.stats.hit_rate == fast.planner.stats.hit_rate
    assert timed.planner.stats.hit_rate > 0.1  # the workload does reuse prefixes


def test_latency_of_an_ssd_hit_is_the_hand_computed_graph(tmp_path, profile) -> None:
    a, b = list(range(1, 9)), list(range(101, 109))  # two 8-block prompts, unrelated keys
    trace = write_requests(tmp_path / "t.jsonl", [
        RequestRecord(0.0, "get", "a1", 128, a, output_tokens=4),
        RequestRecord(10.0, "get", "b", 128, b, output_tokens=4),  # evicts a from CPU
        RequestRecord(20.0, "get", "a2", 128, a, output_tokens=4),  # CPU miss, SSD hit
    ])
    inp = prepare_replay(trace, overrides=[
        "cache_config.num_cpu_blocks=8", "cache_config.num_ssd_blocks=64",
        "cache_config.ssd_cache_iouring_entries=8", "cache_config.transfer_sms_h2d=2",
    ])
    block = inp.config.model_config.bytes_per_block(16)
    nbytes = 8 * block
    result = replay_timing(inp, profile, progress=False)
    first, _, third = result.records
    # SSD read at queue depth 8: 8 GB/s * 8 / (8 + 8); H2D on 2 SMs: 2 x 10 GB/s.
    ssd_read = 100e-6 + nbytes / (8e9 * 8 / 16)
    h2d = 10e-6 + nbytes / 20e9
    assert third[COL["ssd_tokens"]] == 128 and third[COL["cpu_tokens"]] == 0
    assert third[COL["get_s"]] == pytest.approx(30e-6 + ssd_read + h2d, rel=1e-9)
    assert third[COL["ttft_s"]] == pytest.approx(30e-6 + ssd_read + h2d + 1e-3, rel=1e-9)
    # A cold request: nothing to load, prefill 128 tokens, then the write-through PUT.
    assert first[COL["get_s"]] == pytest.approx(30e-6, rel=1e-9)
    assert first[COL["ttft_s"]] == pytest.approx(30e-6 + 1e-3 + 128 * 10e-6, rel=1e-9)
    d2h = 10e-6 + nbytes / 40e9  # 8 default SMs x 10 GB/s, capped at 40 GB/s
    ssd_write = 50e-6 + nbytes / (4e9 * 8 / 16)
    assert first[COL["put_s"]] == pytest.approx(d2h + ssd_write, rel=1e-9)
    assert first[COL["decode_s"]] == pytest.approx(4 * 5e-3)


def test_copy_engine_curve_counts_one_copy_per_block(tmp_path, profile) -> None:
    keys = list(range(1, 5))
    trace = write_requests(tmp_path / "t.jsonl", [
        RequestRecord(0.0, "get", "a", 64, keys), RequestRecord(5.0, "get", "b", 64, keys),
    ])
    inp = prepare_replay(trace, overrides=["cache_config.use_ce_transfer_h2d=true"])
    nbytes = 4 * inp.config.model_config.bytes_per_block(16)
    second = replay_timing(inp, profile, progress=False).records[1]
    assert second[COL["get_s"]] == pytest.approx(30e-6 + 20e-6 + 4 * 5e-6 + nbytes / 50e9)


def test_reblocking_matches_a_trace_recorded_at_the_coarser_size(tmp_path) -> None:
    paths = {}
    for block in (16, 32):
        header, records = generate(
            "multiturn", requests=120, seed=5, rate=2.0, tokens_per_block=block,
            key_mode="tokens",
        )
        paths[block] = tmp_path / f"w{block}.jsonl"
        write_trace(paths[block], header, records)
    coarse = prepare_replay(paths[16], overrides=["cache_config.tokens_per_block=32",
                                                   "cache_config.num_cpu_blocks=400"])
    native = prepare_replay(paths[32], overrides=["cache_config.num_cpu_blocks=400"])
    assert [len(r.keys) for r in coarse.requests] == [len(r.keys) for r in native.requests]
    a = replay_hitrate(coarse, progress=False).records
    b = replay_hitrate(native, progress=False).records
    assert [r[5:9] for r in a] == [r[5:9] for r in b]
    assert sum(r[6] for r in a) > 0


CONVERSATION = public_traces_dir() / "conversation_trace.jsonl"


@pytest.mark.skipif(not CONVERSATION.exists(), reason=f"public trace not at {CONVERSATION}")
def test_conversation_trace_timing_within_a_point_of_hitrate(tmp_path) -> None:
    result = CliRunner().invoke(main, [
        "replay", str(CONVERSATION), "--mode", "timing", "--json", "--out", str(tmp_path / "r"),
        "--set", "cache_config.num_cpu_blocks=5859", "--no-report",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert abs(summary["hit_rate"] - 0.1387) < 0.01
    assert summary["gets_in_flight"] >= 0
    assert summary["latency"]["ttft_s"]["p50"] > 0
    assert summary["span_s"] > 3000
    assert set(summary["link_utilisation"]) >= {"h2d", "d2h"}
    assert (tmp_path / "r" / "utilisation.csv").exists()


def test_one_at_a_time_pacing_starts_each_request_when_the_last_ended(tmp_path, profile) -> None:
    header, records = generate("multiturn", requests=40, seed=2, rate=100.0)
    trace = tmp_path / "w.jsonl"
    write_trace(trace, header, records)
    inp = prepare_replay(trace, overrides=["cache_config.num_cpu_blocks=200"])
    result = replay_timing(inp, profile, speed="max", progress=False)
    rows = sorted(result.records, key=lambda r: r[COL["t"]])
    assert len(rows) == 40
    for before, after in itertools.pairwise(rows):
        put_end = before[COL["t"]] + before[COL["ttft_s"]] + before[COL["put_s"]]
        assert after[COL["t"]] == pytest.approx(max(before[COL["end_t"]], put_end), abs=1e-12)
    fast = replay_hitrate(inp, progress=False)
    assert result.planner.stats.hit_rate == fast.planner.stats.hit_rate


def test_speed_compresses_the_timestamps(tmp_path, profile) -> None:
    header, records = generate("multiturn", requests=30, seed=2, rate=1.0)
    trace = tmp_path / "w.jsonl"
    write_trace(trace, header, records)
    inp = prepare_replay(trace)
    result = replay_timing(inp, profile, speed=10.0, progress=False)
    assert [r[COL["t"]] for r in result.records] == pytest.approx(
        [r.t / 10.0 for r in inp.requests]
    )


def test_an_ssd_op_below_the_queue_depth_pays_for_its_empty_slots(tmp_path, profile) -> None:
    a, b = [1, 2], [101, 102]  # two 2-block prompts: 2 I/Os in flight at queue depth 8
    trace = write_requests(tmp_path / "t.jsonl", [
        RequestRecord(0.0, "get", "a1", 32, a),
        RequestRecord(10.0, "get", "b", 32, b),  # evicts a from CPU
        RequestRecord(20.0, "get", "a2", 32, a),  # CPU miss, SSD hit
    ])
    inp = prepare_replay(trace, overrides=[
        "cache_config.num_cpu_blocks=2", "cache_config.num_ssd_blocks=64",
        "cache_config.ssd_cache_iouring_entries=8", "cache_config.transfer_sms_h2d=2",
    ])
    nbytes = 2 * inp.config.model_config.bytes_per_block(16)
    third = replay_timing(inp, profile, progress=False).records[2]
    # bandwidth x q / (q + h) with q = 2 I/Os, h = 8: the read moves at 8 GB/s x 2 / 10.
    ssd_read = 100e-6 + nbytes / (8e9 * 2 / 10)
    h2d = 10e-6 + nbytes / 20e9
    assert third[COL["ssd_tokens"]] == 32
    assert third[COL["get_s"]] == pytest.approx(30e-6 + ssd_read + h2d, rel=1e-9)
