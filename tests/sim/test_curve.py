"""``flexkv_sim.curve``: the hit rate at every capacity equals a replay at that capacity.

The rule under test (module docstring of ``curve.py``): block ``k`` of a request is a
hit at capacity ``C`` exactly when its LRU stack distance before the request, with each
request touching its blocks from the last to the first, is at most ``C``. The random
traces below check it against ``replay_hitrate`` at *every* capacity from 0 to past the
number of distinct blocks, with shared prefixes, partial last blocks, standalone PUTs,
requests longer than the tier and a GPU prefix cache in front; the generated workloads
and the public trace check it at sample capacities.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from flexkv_engine.config import ConfigError, load_config
from flexkv_engine.core.keys import expand_keys
from flexkv_engine.replay_input import ReplayInput, prepare_replay
from flexkv_engine.trace import SCHEMA_VERSION, RequestRecord, TraceHeader, public_traces_dir
from flexkv_sim.curve import HitRateCurve, hit_rate_curve
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.workloads import generate, write_trace

CONVERSATION = public_traces_dir() / "conversation_trace.jsonl"
needs_trace = pytest.mark.skipif(
    not CONVERSATION.exists(), reason=f"public trace not found at {CONVERSATION}"
)


def random_requests(seed: int, count: int, tpb: int) -> list[RequestRecord]:
    """Requests whose prompts extend random earlier prompts (chained keys, shared prefixes)."""
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
            chunk = rng.randrange(3)  # few chunks: branches also re-join known keys
            keys.append(ids.setdefault((parent, chunk), len(ids) + 1))
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


def replayed(inp: ReplayInput, capacity: int) -> tuple[int, float, float]:
    """CPU hit tokens, hit rate and the CPU tier's rate of a replay at ``capacity``."""
    cc = dataclasses.replace(inp.config.cache_config, num_cpu_blocks=capacity)
    inp = dataclasses.replace(inp, config=dataclasses.replace(inp.config, cache_config=cc))
    stats = replay_hitrate(inp, progress=False).planner.stats
    return stats.tokens_by_tier["cpu"], stats.hit_rate, stats.hit_rate_by_tier()["cpu"]


def assert_matches_replay(curve: HitRateCurve, inp: ReplayInput, capacities) -> None:
    for capacity in capacities:
        tokens, rate, cpu_rate = replayed(inp, capacity)
        assert curve.hit_tokens_at(capacity) == tokens, capacity
        assert curve.hit_rate_at(capacity) == cpu_rate, capacity
        if not inp.config.cache_config.enable_ssd:
            assert curve.hit_rate_at(capacity) == rate, capacity


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("gpu_blocks", [0, 3])
def test_every_capacity_of_random_traces_equals_the_replay(seed: int, gpu_blocks: int) -> None:
    tpb = 4
    inp = replay_input(
        random_requests(seed, 70, tpb), tpb, f"serving_config.num_gpu_blocks={gpu_blocks}"
    )
    curve = hit_rate_curve(inp, progress=False)
    assert curve.distinct_blocks >= curve.max_capacity
    assert_matches_replay(curve, inp, range(1, curve.distinct_blocks + 3))
    assert curve.hit_tokens_at(0) == 0


@pytest.fixture(scope="module", params=["multiturn", "agent", "rag"])
def workload_trace(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("curve") / f"{request.param}.jsonl"
    header, records = generate(request.param, requests=400, seed=7, rate=20.0)
    write_trace(path, header, records)
    return path


def sample_capacities(curve: HitRateCurve) -> list[int]:
    top = curve.max_capacity
    return sorted(
        {
            1,
            2,
            17,
            top // 7,
            top // 3,
            top // 2,
            top - 1,
            top,
            top + 5,
            curve.capacity_for(0.5),
            curve.capacity_for(0.9),
        }
        - {0}
    )


@pytest.mark.parametrize("block", [16, 64])
def test_generated_workloads_match_the_replay(workload_trace, block: int) -> None:
    inp = prepare_replay(workload_trace, overrides=[f"cache_config.tokens_per_block={block}"])
    curve = hit_rate_curve(inp, progress=False)
    assert curve.max_hit_rate > 0.05
    assert_matches_replay(curve, inp, sample_capacities(curve))


def test_cpu_share_is_the_same_with_an_ssd_tier(workload_trace) -> None:
    """The CPU tier gets every block a request matches or inserts, SSD or not."""
    inp = prepare_replay(
        workload_trace,
        overrides=["cache_config.enable_ssd=true", "cache_config.num_ssd_blocks=3000"],
    )
    curve = hit_rate_curve(inp, progress=False)
    assert_matches_replay(curve, inp, sample_capacities(curve)[:6])


def test_listed_capacities_describe_the_whole_curve() -> None:
    tpb = 4
    inp = replay_input(random_requests(3, 300, tpb), tpb)
    curve = hit_rate_curve(inp, progress=False)
    hits = curve.hits
    changes = curve.capacities("changes")
    assert changes[0] == 0 and changes[-1] == curve.max_capacity
    assert set(np.flatnonzero(np.diff(hits)) + 1) <= set(changes.tolist())
    corners = curve.capacities("corners")
    assert len(corners) < len(changes)
    # Between corners the hit tokens grow linearly: interpolation gives every capacity.
    every = np.arange(len(hits))
    assert np.array_equal(np.interp(every, corners, hits[corners]), hits)
    assert np.array_equal(curve.rates(changes), hits[changes] / curve.prompt_tokens)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("cache_config.eviction_policy=lfu", "eviction_policy"),
        ("cache_config.evict_ratio=0.05", "evict_ratio"),
        ("cache_config.evict_start_threshold=0.9", "evict_start_threshold"),
        ("cache_config.hit_reward_seconds=5", "hit_reward_seconds"),
        ("cache_config.store_after_hits=1", "store_after_hits"),
    ],
)
def test_refuses_configs_that_are_not_plain_lru(override: str, key: str) -> None:
    inp = replay_input(random_requests(1, 10, 4), 4, override)
    with pytest.raises(ConfigError, match=key) as info:
        hit_rate_curve(inp, progress=False)
    assert info.value.key_path == f"cache_config.{key}"


@pytest.fixture(scope="module")
def conversation():
    return prepare_replay(CONVERSATION)


@needs_trace
def test_public_trace_at_512_token_blocks(conversation) -> None:
    curve = hit_rate_curve(conversation, progress=False)
    assert curve.distinct_blocks == 182_790
    assert_matches_replay(curve, conversation, [1, 900, 1953, 5859, 19531, 1_000_000])
    assert round(curve.hit_rate_at(5859), 4) == 0.1387


@needs_trace
@pytest.mark.slow
def test_public_trace_at_16_token_blocks(conversation) -> None:
    requests = [
        dataclasses.replace(r, keys=expand_keys(r.keys, 32, r.num_tokens, 16))
        for r in conversation.requests[:4000]
    ]
    inp = replay_input(requests, 16, "serving_config.num_gpu_blocks=500")
    curve = hit_rate_curve(inp, progress=False)
    assert_matches_replay(curve, inp, [7, 1000, 30_000, 187_488, curve.max_capacity])
