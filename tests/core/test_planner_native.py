"""Planners over native and over Python indexes plan the same graphs, call by call.

Random GET/PUT/prefetch, completions, failures (with the failed source invalidated) and
cancellations over CPU, SSD and remote tiers: every graph has the same ops (path, block
range, dependencies, block ids, status), and the stats and the trees stay equal.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flexkv_engine.core.graph import PENDING
from flexkv_engine.core.index import make_tier_index
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.policies import POLICIES, make_policy

from .conftest import chain

try:
    from flexkv_engine.core import native_index
except ImportError as exc:
    pytest.skip(f"native module not importable: {exc}", allow_module_level=True)

paths = st.lists(st.integers(0, 2), min_size=1, max_size=7)


def shape(planner: Planner, graph) -> list[tuple]:
    out = []
    for op in graph.ops:
        src, dst = planner.block_ids(op) if op.status == PENDING else (None, None)
        out.append((op.path, op.start, op.end, op.deps, op.status, src, dst))
    return [graph.done, graph.in_flight, sorted(graph.served.items()), *out]


def tree(index) -> list[tuple]:
    return sorted(
        (tuple(n.keys), n.start, n.ready, n.lock, n.last, n.seq, n.hits, n.ticket, tuple(n.ids))
        for n in index.nodes()
    )


class PlannerPair(RuleBasedStateMachine):
    @initialize(
        policy=st.sampled_from(sorted(POLICIES)),
        reward=st.sampled_from([0.0, 2.0]),
        cpu=st.integers(1, 10),
        ssd=st.sampled_from([None, 0, 4, 12]),
        remote=st.sampled_from([None, 6, 30]),
        evict_ratio=st.sampled_from([0.0, 0.25]),
        threshold=st.sampled_from([1.0, 0.75]),
        admission=st.sampled_from([0, 0, 1]),
    )
    def setup(self, policy, reward, cpu, ssd, remote, evict_ratio, threshold, admission):
        self.planners = []
        for native in (False, True):
            sizes = {"cpu": cpu, "ssd": ssd, "remote": remote}
            tiers = {
                name: make_tier_index(
                    name,
                    size,
                    make_policy(policy, hit_reward_seconds=reward),
                    evict_ratio=evict_ratio,
                    evict_start_threshold=threshold,
                    native=native,
                )
                for name, size in sizes.items()
                if size is not None
            }
            self.planners.append(Planner(tiers, 16, store_after_hits=admission))
        assert isinstance(self.planners[1].cpu, native_index.NativeTierIndex)
        self.open: list[tuple] = []
        self.now = 0.0

    @rule(
        symbols=paths,
        gpu=st.integers(0, 3),
        kind=st.sampled_from(["get", "put", "prefetch"]),
        known=st.integers(0, 7),
    )
    def plan(self, symbols, gpu, kind, known) -> None:
        self.now += 1.0
        keys = chain(symbols)
        graphs = []
        for p in self.planners:
            if kind == "put":
                graphs.append(p.plan_put("r", keys, 16 * len(keys) - 3, self.now))
            else:
                graphs.append(
                    p.plan_get(
                        "r",
                        keys,
                        16 * len(keys) - 3,
                        self.now,
                        gpu_blocks=min(gpu, len(keys)),
                        to_gpu=kind == "get",
                        remote_known=min(known, len(keys)),
                    )
                )
        assert shape(self.planners[0], graphs[0]) == shape(self.planners[1], graphs[1])
        if not graphs[0].done:
            self.open.append(tuple(graphs))

    @precondition(lambda self: self.open)
    @rule(data=st.data(), ok=st.booleans(), bad=st.integers(-1, 4))
    def complete_one(self, data, ok, bad) -> None:
        pair = data.draw(st.sampled_from(self.open))
        runnable = pair[0].runnable()
        if runnable:
            i = pair[0].ops.index(data.draw(st.sampled_from(runnable)))
            for p, graph in zip(self.planners, pair, strict=True):
                op = graph.ops[i]
                if not ok and op.src is not None and bad >= 0:
                    assert p.invalidate_source(op, op.start + bad) >= 0
                p.complete(graph, op, ok=ok)
        assert shape(self.planners[0], pair[0]) == shape(self.planners[1], pair[1])
        if pair[0].done:
            self.open.remove(pair)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def cancel_one(self, data) -> None:
        pair = data.draw(st.sampled_from(self.open))
        for p, graph in zip(self.planners, pair, strict=True):
            p.cancel(graph)
        self.open.remove(pair)

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "planners"):
            return
        py, nat = self.planners
        assert py.stats == nat.stats
        for name, tier in py.tiers.items():
            other = nat.tiers[name]
            tier.check()
            other.check()
            assert (tier.used, tier.num_nodes, tier.evicted_blocks, tier.dropped_blocks) == (
                other.used,
                other.num_nodes,
                other.evicted_blocks,
                other.dropped_blocks,
            )
            assert tier.root.lock == other.root.lock
            assert tree(tier) == tree(other)


TestPlannerPair = PlannerPair.TestCase
TestPlannerPair.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
