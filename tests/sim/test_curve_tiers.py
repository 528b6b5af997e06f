"""``flexkv_sim.curve`` for the SSD and remote tiers: each equals the replay's tier share.

The rule under test (module docstring of ``curve.py``): behind a CPU tier of ``P``
blocks, SSD and the remote index are plain LRU over the requests cut to their first
``P`` blocks; SSD serves the blocks with ``P < e_k <= S``, and the remote tier, whose
store keeps what its index evicts, the blocks seen before at positions below ``R`` that
neither CPU nor SSD holds. Random traces check ``hit_rate_by_tier.ssd`` / ``.remote`` of
``replay_hitrate`` at every capacity, generated workloads at sample capacities.
"""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from click.testing import CliRunner

from flexkv_engine.config import ConfigError, load_config
from flexkv_engine.replay_input import ReplayInput, prepare_replay
from flexkv_engine.trace import SCHEMA_VERSION, RequestRecord, TraceHeader, public_traces_dir
from flexkv_sim.cli import main
from flexkv_sim.curve import HitRateCurve, hit_rate_curve
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.workloads import generate, write_trace


def random_requests(seed: int, count: int, tpb: int) -> list[RequestRecord]:
    """Prompts extending random earlier prompts (as in test_curve.py): shared prefixes,
    branches that re-join known keys, partial last blocks, standalone PUTs."""
    rng = random.Random(seed)
    ids: dict[tuple[int, int], int] = {}  # (parent key, chunk) -> key: chained keys
    prompts: list[list[int]] = []
    out = []
    for i in range(count):
        keys: list[int] = []
        if prompts and rng.random() < 0.8:
            base = rng.choice(prompts)
            keys = base[: rng.randint(0, len(base))]
        for _ in range(rng.choice((0, 1, 1, 2, 3, 5, 9))):
            parent = keys[-1] if keys else 0
            keys.append(ids.setdefault((parent, rng.randrange(3)), len(ids) + 1))
        if not keys:
            keys = [ids.setdefault((0, 0), len(ids) + 1)]
        tokens = len(keys) * tpb - rng.choice((0, 0, 1, tpb - 1))
        prompts.append(keys)
        op = "put" if rng.random() < 0.1 else "get"
        out.append(RequestRecord(i * 0.5, op, f"r{i}", tokens, keys))
    return out


def replay_input(requests: list[RequestRecord], tpb: int, *overrides: str) -> ReplayInput:
    config = load_config(overrides=list(overrides), env={}).resolve(trace_tokens_per_block=tpb)
    return ReplayInput(
        config, TraceHeader(SCHEMA_VERSION, "test", tpb), requests, "memory", "test", tpb, 0.0
    )


def sample_capacities(curve: HitRateCurve) -> list[int]:
    top = curve.max_capacity
    picked = {1, 2, 17, top // 7, top // 3, top // 2, top - 1, top, top + 5}
    picked |= {curve.capacity_for(0.5), curve.capacity_for(0.9), curve.capacity_for(0.99)}
    return sorted(picked - {0})


def with_tier(inp: ReplayInput, tier: str, capacity: int) -> ReplayInput:
    cc = dataclasses.replace(
        inp.config.cache_config, **{f"enable_{tier}": True, f"num_{tier}_blocks": capacity}
    )
    return dataclasses.replace(inp, config=dataclasses.replace(inp.config, cache_config=cc))


def assert_matches_replay(curve: HitRateCurve, inp: ReplayInput, capacities) -> None:
    tier = curve.tier
    for capacity in capacities:
        stats = replay_hitrate(with_tier(inp, tier, capacity), progress=False).planner.stats
        assert curve.hit_tokens_at(capacity) == stats.tokens_by_tier[tier], capacity
        assert curve.hit_rate_at(capacity) == stats.hit_rate_by_tier()[tier], capacity


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gpu_blocks", [0, 3])
@pytest.mark.parametrize("cpu_blocks", [2, 9, 40])
def test_ssd_at_every_capacity_of_random_traces(seed, gpu_blocks, cpu_blocks) -> None:
    tpb = 4
    inp = replay_input(
        random_requests(seed, 70, tpb),
        tpb,
        f"serving_config.num_gpu_blocks={gpu_blocks}",
        f"cache_config.num_cpu_blocks={cpu_blocks}",
    )
    curve = hit_rate_curve(inp, tier="ssd", progress=False)
    assert curve.behind_blocks == {"cpu": cpu_blocks}
    assert curve.configured_blocks is None  # the config has no SSD tier
    assert curve.hit_tokens_at(cpu_blocks) == 0  # SSD no larger than CPU serves nothing
    assert_matches_replay(curve, inp, range(curve.max_capacity + 3))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gpu_blocks", [0, 3])
@pytest.mark.parametrize(("cpu_blocks", "ssd_blocks"), [(2, 0), (9, 0), (9, 4), (9, 25), (40, 60)])
def test_remote_at_every_capacity_of_random_traces(
    seed, gpu_blocks, cpu_blocks, ssd_blocks
) -> None:
    tpb = 4
    inp = replay_input(
        random_requests(seed, 70, tpb),
        tpb,
        f"serving_config.num_gpu_blocks={gpu_blocks}",
        f"cache_config.num_cpu_blocks={cpu_blocks}",
        f"cache_config.num_ssd_blocks={ssd_blocks}",
    )
    curve = hit_rate_curve(inp, tier="remote", progress=False)
    assert curve.behind_blocks == {"cpu": cpu_blocks, "ssd": ssd_blocks}
    assert curve.max_capacity <= cpu_blocks  # a request passes at most P blocks down
    assert_matches_replay(curve, inp, range(curve.max_capacity + 3))


def test_ssd_with_a_remote_tier_behind_it() -> None:
    """A remote tier (unbounded store) below SSD leaves SSD's share as it is."""
    tpb = 4
    inp = replay_input(
        random_requests(5, 120, tpb),
        tpb,
        "cache_config.num_cpu_blocks=12",
        "cache_config.num_remote_blocks=30",
    )
    curve = hit_rate_curve(inp, tier="ssd", progress=False)
    assert curve.max_hit_rate > 0
    assert_matches_replay(curve, inp, range(curve.max_capacity + 3))


@pytest.fixture(scope="module", params=["multiturn", "agent", "rag"])
def workload_trace(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("curve-tiers") / f"{request.param}.jsonl"
    header, records = generate(request.param, requests=400, seed=7, rate=20.0)
    write_trace(path, header, records)
    return path


@pytest.mark.parametrize("block", [16, 64])
def test_generated_workloads_ssd_matches_the_replay(workload_trace, block: int) -> None:
    cpu = 4000 // block
    inp = prepare_replay(
        workload_trace,
        overrides=[
            f"cache_config.tokens_per_block={block}",
            f"cache_config.num_cpu_blocks={cpu}",
            "cache_config.num_ssd_blocks=100",
        ],
    )
    curve = hit_rate_curve(inp, tier="ssd", progress=False)
    assert curve.configured_blocks == 100
    assert curve.max_hit_rate > 0.05
    assert_matches_replay(curve, inp, sample_capacities(curve))


@pytest.mark.parametrize("ssd", [0, 300])
def test_generated_workloads_remote_matches_the_replay(workload_trace, ssd: int) -> None:
    inp = prepare_replay(
        workload_trace,
        overrides=["cache_config.num_cpu_blocks=200", f"cache_config.num_ssd_blocks={ssd}"],
    )
    curve = hit_rate_curve(inp, tier="remote", progress=False)
    assert curve.max_hit_rate > 0.01
    assert_matches_replay(curve, inp, sample_capacities(curve))


@pytest.mark.parametrize(
    ("tier", "overrides"),
    [
        ("remote", ["cache_config.remote_store_capacity_gb=1"]),
        ("ssd", ["cache_config.num_remote_blocks=50", "cache_config.remote_store_capacity_gb=1"]),
    ],
)
def test_a_bounded_remote_store_is_refused(tier: str, overrides: list[str]) -> None:
    tpb = 4
    inp = replay_input(random_requests(1, 20, tpb), tpb, *overrides)
    with pytest.raises(ConfigError) as err:
        hit_rate_curve(inp, tier=tier, progress=False)
    assert err.value.key_path == "cache_config.remote_store_capacity_gb"


def test_ssd_curve_with_a_bounded_store_but_no_remote_tier_runs() -> None:
    tpb = 4
    inp = replay_input(random_requests(1, 40, tpb), tpb, "cache_config.remote_store_capacity_gb=1")
    curve = hit_rate_curve(inp, tier="ssd", progress=False)
    assert_matches_replay(curve, inp, range(curve.max_capacity + 2))


def test_not_plain_lru_is_refused_for_every_tier() -> None:
    tpb = 4
    inp = replay_input(random_requests(1, 20, tpb), tpb, "cache_config.eviction_policy=fifo")
    for tier in ("ssd", "remote"):
        with pytest.raises(ConfigError, match="plain LRU"):
            hit_rate_curve(inp, tier=tier, progress=False)


CONVERSATION = public_traces_dir() / "conversation_trace.jsonl"


@pytest.mark.skipif(not CONVERSATION.exists(), reason=f"public trace not found at {CONVERSATION}")
def test_public_trace_behind_a_cpu_tier() -> None:
    cpu = ["cache_config.num_cpu_blocks=5859"]
    ssd = hit_rate_curve(prepare_replay(CONVERSATION, overrides=cpu), tier="ssd", progress=False)
    inp = prepare_replay(CONVERSATION, overrides=[*cpu, "cache_config.num_ssd_blocks=19531"])
    assert_matches_replay(ssd, inp, [1, 5859, 19531, 60000, ssd.max_capacity])
    assert round(ssd.hit_rate_at(19531), 4) == 0.1521
    remote = hit_rate_curve(inp, tier="remote", progress=False)
    assert_matches_replay(remote, inp, [1, 100, remote.max_capacity])
    assert round(remote.max_hit_rate, 4) == 0.0828


@pytest.fixture(scope="module")
def chat_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("curve-tiers-cli") / "chat.jsonl"
    write_trace(path, *generate("multiturn", requests=300, seed=9, rate=10.0))
    return path


@pytest.mark.parametrize("tier", ["ssd", "remote"])
def test_cli_lower_tier(chat_trace, tmp_path, tier: str) -> None:
    out = tmp_path / tier
    args = ["curve", str(chat_trace), "--tier", tier, "--json", "--out", str(out)]
    sets = ["cache_config.num_cpu_blocks=300", "cache_config.num_ssd_blocks=800"]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tier"] == tier
    expected = {"cpu": 300} if tier == "ssd" else {"cpu": 300, "ssd": 800}
    assert data["behind_blocks"] == expected
    assert f"hit_rate_by_tier.{tier}" in result.stderr
    # A listed capacity equals the replay there.
    mid = data["points"][len(data["points"]) // 2]
    inp = prepare_replay(
        chat_trace,
        overrides=[*sets, f"cache_config.num_{tier}_blocks={mid['capacity_blocks']}"],
    )
    rates = replay_hitrate(inp, progress=False).planner.stats.hit_rate_by_tier()
    assert rates[tier] == mid["hit_rate"]
    page = (out / "curve.html").read_text()
    label = "SSD" if tier == "ssd" else "remote"
    assert f"{label} hit-rate curve" in page and f"num_{tier}_blocks" in page
