"""The shared remote store: blocks another instance stored join this instance's index."""

from __future__ import annotations

from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.paths import H2D, REMOTE_READ
from flexkv_engine.core.planner import Planner

from .conftest import chain


def planner(cpu: int = 8, remote: int = 8) -> Planner:
    return Planner({"cpu": TierIndex("cpu", cpu), "remote": TierIndex("remote", remote)}, 16)


def settled(p: Planner) -> None:
    for tier in p.tiers.values():
        tier.check()
        assert tier.root.lock == 0


def test_known_blocks_are_adopted_and_read() -> None:
    p = planner()
    keys = chain((1, 2, 3, 4))
    assert p.remote_ready(keys) == 0
    graph = p.plan_get("g", keys, 64, 0.0, remote_known=3)
    assert [(op.path, op.start, op.end) for op in graph.ops] == [(REMOTE_READ, 0, 3), (H2D, 0, 3)]
    p.run(graph)
    assert graph.served["remote"] == (0, 3)
    assert p.stats.adopted_blocks == 3
    assert p.stats.tokens_by_tier["remote"] == 48
    assert p.remote_ready(keys) == 3  # now accounted for by this instance
    assert p.tiers["remote"].used == 3
    settled(p)


def test_adoption_extends_the_own_prefix_and_respects_capacity() -> None:
    p = planner(cpu=8, remote=4)
    keys = chain((1, 2, 3, 4, 5, 6))
    p.run(p.plan_put("w", keys[:2], 32, 0.0))
    p.tiers["cpu"].evict(2)
    assert p.remote_ready(keys) == 2
    graph = p.plan_get("g", keys, 96, 1.0, remote_known=6)
    # Only 2 more fit beside the 2 this instance wrote (locked by the GET itself).
    assert [(op.path, op.start, op.end) for op in graph.ops] == [(REMOTE_READ, 0, 4), (H2D, 0, 4)]
    p.run(graph)
    assert p.stats.adopted_blocks == 2
    assert p.tiers["remote"].alloc_failures >= 1
    settled(p)


def test_without_a_known_prefix_nothing_is_adopted() -> None:
    p = planner()
    keys = chain((1, 2))
    graph = p.plan_get("g", keys, 32, 0.0, remote_known=0)
    assert graph.ops == [] and graph.done
    assert p.stats.adopted_blocks == 0 and p.tiers["remote"].used == 0
    settled(p)


def test_failed_read_of_adopted_blocks_is_a_miss() -> None:
    p = planner()
    keys = chain((7, 8))
    graph = p.plan_get("g", keys, 32, 0.0, remote_known=2)
    read = graph.ops[0]
    p.complete(graph, read, ok=False)
    assert graph.done
    assert p.stats.tokens_by_tier["remote"] == 0
    assert p.tiers["cpu"].used == 0  # the staging blocks were freed
    settled(p)
