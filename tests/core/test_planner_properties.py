"""Random GET/PUT/complete/fail/cancel sequences keep every invariant after every step.

Invariants: each tier is a well-formed, prefix-closed tree with ``used + free ==
capacity`` and no block id held twice (``TierIndex.check``); no block locked by an open
graph and no block being written was evicted; every lock is released once all graphs
have ended.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flexkv_engine.core.graph import PENDING, TransferGraph
from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.policies import POLICIES, make_policy

from .conftest import chain

paths = st.lists(st.integers(0, 2), min_size=1, max_size=7)


class PlannerMachine(RuleBasedStateMachine):
    @initialize(
        policy=st.sampled_from(sorted(POLICIES)),
        cpu=st.integers(1, 10),
        ssd=st.sampled_from([None, 0, 4, 12]),
        remote=st.sampled_from([None, 6, 30]),
        evict_ratio=st.sampled_from([0.0, 0.25]),
        threshold=st.sampled_from([1.0, 0.75]),
        admission=st.sampled_from([0, 0, 1]),
    )
    def setup(self, policy, cpu, ssd, remote, evict_ratio, threshold, admission) -> None:
        def tier(name: str, capacity: int) -> TierIndex:
            return TierIndex(
                name,
                capacity,
                make_policy(policy),
                evict_ratio=evict_ratio,
                evict_start_threshold=threshold,
            )

        tiers = {"cpu": tier("cpu", cpu)}
        if ssd is not None:
            tiers["ssd"] = tier("ssd", ssd)
        if remote is not None:
            tiers["remote"] = tier("remote", remote)
        self.planner = Planner(tiers, 16, store_after_hits=admission)
        self.open: list[TransferGraph] = []
        self.now = 0.0

    def _plan(self, kind: str, symbols: list[int], gpu: int) -> None:
        self.now += 1.0
        keys = chain(symbols)
        tokens = 16 * len(keys) - 3
        p = self.planner
        if kind == "put":
            graph = p.plan_put(f"r{self.now}", keys, tokens, self.now)
        else:
            graph = p.plan_get(
                f"r{self.now}",
                keys,
                tokens,
                self.now,
                gpu_blocks=min(gpu, len(keys)),
                to_gpu=kind == "get",
            )
        for op in graph.ops:
            src, dst = p.block_ids(op)  # resolvable while the graph is open
            assert (src is None or len(src) == op.blocks) and (dst is None or len(dst) == op.blocks)
        if not graph.done:
            self.open.append(graph)

    @rule(symbols=paths, gpu=st.integers(0, 3), kind=st.sampled_from(["get", "put", "prefetch"]))
    def plan(self, symbols, gpu, kind) -> None:
        self._plan(kind, symbols, gpu)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), ok=st.booleans())
    def complete_one(self, data, ok) -> None:
        graph = data.draw(st.sampled_from(self.open))
        runnable = graph.runnable()
        if runnable:
            self.planner.complete(
                graph, data.draw(st.sampled_from(runnable)), ok=ok or data.draw(st.booleans())
            )
        if graph.done:
            self.open.remove(graph)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def cancel_one(self, data) -> None:
        graph = data.draw(st.sampled_from(self.open))
        self.planner.cancel(graph)
        assert graph.done and all(op.status != PENDING for op in graph.ops)
        self.open.remove(graph)

    @rule()
    def finish_all(self) -> None:
        for graph in self.open:
            self.planner.run(graph)
        self.open.clear()
        for tier in self.planner.tiers.values():
            assert tier.root.lock == 0, f"{tier.name}: locks left after every graph ended"
            assert all(node.lock == 0 and node.ready for node in tier.nodes())

    @invariant()
    def tiers_are_consistent(self) -> None:
        if not hasattr(self, "planner"):
            return
        for tier in self.planner.tiers.values():
            tier.check()

    @invariant()
    def nothing_held_by_open_graphs_was_evicted(self) -> None:
        for graph in getattr(self, "open", []):
            for tier, handle in graph.locks:
                assert not handle.removed or not handle.ready, (tier.name, handle)
            for op in graph.ops:
                if op.status == PENDING and op.dst is not None:
                    assert not op.dst[1].removed, f"{op} lost its destination"
                if op.status == PENDING and op.src is not None:
                    assert not op.src[1].removed, f"{op} lost its source"

    @invariant()
    def hit_rate_is_a_fraction(self) -> None:
        if hasattr(self, "planner"):
            assert 0.0 <= self.planner.stats.hit_rate <= 1.0


TestPlannerMachine = PlannerMachine.TestCase
TestPlannerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
