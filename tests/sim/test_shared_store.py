"""Several instances on one remote store in the twin: the store model and shared replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.cli import main
from flexkv_sim.hardware import DEFAULT_PROFILES, load_profiles
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.replay.shared import replay_shared_hitrate, replay_shared_timing, route
from flexkv_sim.replay.store import StoreModel

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "sharing" / "two-instances.yaml"
REMOTE = [
    "cache_config.num_cpu_blocks=300",
    "cache_config.num_remote_blocks=8000",
    "serving_config.num_gpu_blocks=0",
]


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("shared") / "chat.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "trace",
            "generate",
            "--workload",
            "multiturn",
            "--requests",
            "600",
            "--seed",
            "5",
            "--rate",
            "8",
            "-o",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    return str(path)


def test_store_model_keeps_the_newest_blocks() -> None:
    store = StoreModel(capacity=3)
    store.stored([1, 2, 3])
    assert store.known([1, 2, 3, 4]) == 3
    store.stored([1])  # a rewrite makes it the newest
    store.stored([4])  # so 2 is the oldest now
    assert 2 not in store and all(k in store for k in (1, 3, 4))
    assert store.evicted == 1 and len(store) == 3
    assert store.known([1, 2, 3]) == 1  # leading blocks only
    assert store.known([9, 3, 4], start=1) == 3
    assert store.known([3, 2]) == 1 and store.known([3, 4]) == 2
    with pytest.raises(ValueError, match=">= 0 blocks"):
        StoreModel(capacity=-1)


def test_one_instance_is_the_plain_replay(chat) -> None:
    inp = prepare_replay(chat, overrides=REMOTE)
    alone = replay_hitrate(inp, progress=False)
    shared = replay_shared_hitrate(route(inp, 1))
    assert shared.instances[0].records == alone.records
    assert shared.instances[0].planner.stats.hit_rate == alone.planner.stats.hit_rate


def test_a_shared_store_serves_what_the_other_instance_stored(chat) -> None:
    inp = prepare_replay(chat, overrides=REMOTE)
    parts = route(inp, 2, "round-robin")
    assert sorted(len(p.requests) for p in parts) == [300, 300]
    shared = replay_shared_hitrate(parts, shared=True)
    private = replay_shared_hitrate(parts, shared=False)
    for result in (shared, private):
        for run in result.instances:
            for tier in run.planner.tiers.values():
                tier.check()
    served = [r.planner.stats.tokens_by_tier["remote"] for r in shared.instances]
    alone = [r.planner.stats.tokens_by_tier["remote"] for r in private.instances]
    assert all(s > a for s, a in zip(served, alone, strict=True))
    assert all(r.planner.stats.adopted_blocks > 0 for r in shared.instances)
    # Every adopted block was in the store: the store holds at least what was adopted last.
    assert shared.store is not None and len(shared.store) > 0


def test_prefix_routing_keeps_conversations_apart(chat) -> None:
    inp = prepare_replay(chat, overrides=REMOTE)
    parts = route(inp, 2, "prefix")
    for part in parts:
        firsts = {r.keys[0] for r in part.requests if r.keys}
        others = {r.keys[0] for p in parts if p is not part for r in p.requests if r.keys}
        assert not firsts & others


def test_timing_mode_shares_the_store_and_the_clock(chat) -> None:
    inp = prepare_replay(chat, overrides=REMOTE)
    profile = load_profiles(DEFAULT_PROFILES)
    shared = replay_shared_timing(route(inp, 2), profile)
    private = replay_shared_timing(route(inp, 2), profile, shared=False)
    assert [len(r.records) for r in shared.instances] == [300, 300]
    s = sum(r.planner.stats.tokens_by_tier["remote"] for r in shared.instances)
    p = sum(r.planner.stats.tokens_by_tier["remote"] for r in private.instances)
    assert s > p
    assert shared.instances[0].span_s == shared.instances[1].span_s  # one clock


def test_cli_reports_shared_and_private(chat, tmp_path) -> None:
    sets = [a for o in REMOTE for a in ("--set", o)]
    result = CliRunner().invoke(main, ["shared", chat, *sets, "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["shared"]["hit_rate"] > summary["private"]["hit_rate"]
    assert len(summary["shared"]["per_instance"]) == 2


def test_cli_needs_a_remote_tier(chat) -> None:
    result = CliRunner().invoke(main, ["shared", chat])
    assert result.exit_code == 2
    assert "remote tier" in result.output


def test_sharing_scenario_runs() -> None:
    result = CliRunner().invoke(main, ["shared", "--scenario", str(SCENARIO), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["shared"]["hit_rate"] > summary["private"]["hit_rate"] + 0.05
