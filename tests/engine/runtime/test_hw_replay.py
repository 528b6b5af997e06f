"""``flexkv-run replay``: integrity checks and block-level agreement with the twin."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from flexkv_engine.cli import main as run_main  # noqa: E402
from flexkv_engine.hw_replay.run import RUN_COLUMNS  # noqa: E402
from flexkv_engine.hw_replay.serving import ServingEmulator  # noqa: E402
from flexkv_engine.kv_manager import KVManager  # noqa: E402
from flexkv_engine.replay_input import prepare_replay  # noqa: E402
from flexkv_sim.cli import main as sim_main  # noqa: E402
from flexkv_sim.replay import replay_hitrate  # noqa: E402
from flexkv_sim.workloads import generate, write_trace  # noqa: E402

TINY = ["model_config.num_layers=1", "model_config.num_kv_heads=1",
        "model_config.head_size=16", "model_config.dtype=float16"]


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "chat.jsonl"
    header, records = generate("multiturn", requests=120, seed=11, rate=4.0)
    write_trace(path, header, records)
    return path


@pytest.mark.parametrize("extra", [
    ["cache_config.num_cpu_blocks=150"],
    ["cache_config.num_cpu_blocks=150", "serving_config.num_gpu_blocks=40",
     "cache_config.eviction_policy=lfu"],
    ["cache_config.num_cpu_blocks=60", "cache_config.num_ssd_blocks=400", "SSD"],
    # A remote store of about 300 objects behind a small CPU tier: the store evicts its
    # oldest objects, the twin's store model the same ones.
    ["cache_config.num_cpu_blocks=60", "cache_config.num_remote_blocks=400",
     "cache_config.remote_store_capacity_gb=0.00116", "REMOTE"],
])
def test_speed_max_hits_equal_the_twin_block_for_block(workload, tmp_path, extra) -> None:
    ssd = None
    if "SSD" in extra:  # an SSD tier behind a CPU tier too small for the workload
        ssd = Path(tempfile.mkdtemp(prefix="flexkv-test-", dir="/var/tmp"))
        extra = [e for e in extra if e != "SSD"] + [f"cache_config.ssd_cache_dir={ssd}/d"]
    with_remote = "REMOTE" in extra
    if with_remote:  # an fs store in a fresh directory
        extra = [e for e in extra if e != "REMOTE"] + [
            f"cache_config.remote_url={tmp_path / 'store'}"
        ]
    try:
        check_agreement(workload, tmp_path, extra, with_ssd=ssd is not None,
                        with_remote=with_remote)
    finally:
        if ssd is not None:
            shutil.rmtree(ssd, ignore_errors=True)


def check_agreement(workload, tmp_path, extra, *, with_ssd: bool, with_remote: bool = False
                    ) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(run_main, [
        "replay", str(workload), "--speed", "max", "--device", "cpu", "--out", str(out),
        "--json", *[a for o in [*TINY, *extra] for a in ("--set", o)],
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["integrity_failures"] == 0
    twin = replay_hitrate(prepare_replay(workload, overrides=[*TINY, *extra]), progress=False)
    rows = [line.split(",") for line in (out / "requests.csv").read_text().splitlines()[1:]]
    hits = slice(RUN_COLUMNS.index("gpu_tokens"), RUN_COLUMNS.index("remote_tokens") + 1)
    assert [tuple(map(int, r[hits])) for r in rows] == [r[5:9] for r in twin.records]
    assert summary["hit_rate"] == twin.planner.stats.hit_rate > 0.1
    assert summary["hit_rate_by_tier"] == twin.planner.stats.hit_rate_by_tier()
    assert (summary["hit_rate_by_tier"]["ssd"] > 0) == with_ssd
    assert (summary["hit_rate_by_tier"]["remote"] > 0) == with_remote
    # The engine's own trace replays in the twin unchanged, with the same hits.
    again = CliRunner().invoke(sim_main, [
        "replay", str(out / "trace.jsonl"), "--json",
        *[a for o in [*TINY, *extra] for a in ("--set", o)],
    ])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["hit_rate"] == summary["hit_rate"]
    assert '"type":"transfer"' in (out / "trace.jsonl").read_text()
    if with_ssd:
        check_ssd_ios_agree(workload, out, extra, tmp_path)


def check_ssd_ios_agree(workload, out, extra, tmp_path) -> None:
    """The twin counts the same I/Os for each SSD op as the engine traced (a profile
    with a per-I/O cost makes it keep block ids and count them)."""
    from flexkv_engine.trace import TransferRecord, read_trace
    from flexkv_sim.hardware import load_profiles
    from flexkv_sim.replay.timing import replay_timing

    profile = tmp_path / "per-io.yaml"
    profile.write_text("schema_version: 1\nssd:\n  read: {per_io: 20us}\n  write: {per_io: 20us}\n")
    ssd = ("ssd_read", "ssd_write")
    engine = sorted((r.request_id, r.op_id, r.path, r.num_blocks, r.ios)
                    for r in read_trace(out / "trace.jsonl")
                    if isinstance(r, TransferRecord) and r.path in ssd)
    twin = replay_timing(prepare_replay(workload, overrides=[*TINY, *extra]),
                         load_profiles(["ci-cpu", str(profile)]), speed="max",
                         progress=False, record_transfers=True)
    assert twin.transfers is not None
    predicted = sorted((r.request_id, r.op_id, r.path, r.num_blocks, r.ios)
                       for r in twin.transfers if r.path in ssd)
    assert predicted == engine
    assert all(0 < ios <= blocks for *_, blocks, ios in engine)
    assert sum(ios for *_, ios in engine) < sum(blocks for *_, blocks, _ in engine)  # merged


def test_corrupted_cpu_block_is_reported_with_block_and_tier(workload) -> None:
    inp = prepare_replay(workload, overrides=[*TINY, "cache_config.num_cpu_blocks=400"])
    kv = KVManager(inp.config, num_gpu_blocks=600)
    emulator = ServingEmulator(kv, 0, 600, inp.config.serving_config.compute,
                               emulate_compute=False)
    try:
        first = inp.requests[0]
        emulator.serve(first, 0.0)
        kv.host.buffer.zero_()  # every stored block is now wrong
        same = type(first)(first.t + 1, "get", "again", first.num_tokens, first.keys)
        emulator.serve(same, 0.0)
    finally:
        kv.close()
    assert emulator.failures
    failure = emulator.failures[0]
    assert failure.tier == "cpu" and failure.request_id == "again" and failure.block == 0
    assert "loaded from cpu" in str(failure)


def test_paced_replay_runs_and_reports_latency(workload, tmp_path) -> None:
    result = CliRunner().invoke(run_main, [
        "replay", str(workload), "--speed", "50", "--device", "cpu", "--json",
        *[a for o in [*TINY, "cache_config.num_cpu_blocks=150"] for a in ("--set", o)],
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["integrity_failures"] == 0 and summary["mode"] == "paced"
    assert summary["latency"]["ttft_s"]["p50"] > 0
    assert 0 < summary["hit_rate"] < 1


def test_bad_speed_is_a_usage_error(workload) -> None:
    result = CliRunner().invoke(run_main, ["replay", str(workload), "--speed", "fast"])
    assert result.exit_code == 2
    assert "neither a number nor 'max'" in result.output


def test_a_replay_starts_from_an_empty_ssd_unless_asked(workload, tmp_path) -> None:
    from flexkv_engine.hw_replay.run import run_replay

    sets = [*TINY, "cache_config.num_cpu_blocks=60", "cache_config.num_ssd_blocks=400",
            f"cache_config.ssd_cache_dir={tmp_path / 'ssd'}"]
    first = run_replay(prepare_replay(workload, overrides=sets)).summary
    again = run_replay(prepare_replay(workload, overrides=sets)).summary
    assert again["hit_rate_by_tier"] == first["hit_rate_by_tier"]
    warm = run_replay(prepare_replay(
        workload, overrides=[*sets, "cache_config.ssd_restore=true"])).summary
    assert warm["hit_rate_by_tier"]["ssd"] > first["hit_rate_by_tier"]["ssd"]
