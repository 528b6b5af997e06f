"""``Planner.access`` equals ``run(plan_get)`` + ``run(plan_put)`` on a CPU tier alone.

Two planners get the same random requests, one through transfer graphs, one through
``access``; after every request the served ranges, the stats and the whole index (every
node's run of keys, ready flag, lock count and access state, and what is evicted next)
must be identical.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.policies import POLICIES, make_policy

from .conftest import chain

requests = st.lists(
    st.tuples(
        st.lists(st.integers(0, 2), min_size=1, max_size=8),
        st.integers(0, 3),
        st.sampled_from([0.0, 0.0, 1.0]),
    ),
    min_size=1,
    max_size=40,
)


def snapshot(index: TierIndex) -> list:
    nodes = sorted(index.nodes(), key=lambda n: (n.start, n.keys))
    return [(n.start, list(n.keys), n.ready, n.lock, n.last, n.hits) for n in nodes]


@settings(max_examples=200, deadline=None)
@given(
    requests,
    st.sampled_from(sorted(POLICIES)),
    st.integers(1, 12),
    st.sampled_from([0.0, 0.25]),
    st.sampled_from([1.0, 0.75]),
    st.sampled_from([0, 1]),
    st.booleans(),
)
def test_access_matches_the_graph_path(
    reqs, policy, capacity, ratio, threshold, admission, track_ids
) -> None:
    def planner() -> Planner:
        tier = TierIndex(
            "cpu",
            capacity,
            make_policy(policy, hit_reward_seconds=0.5),
            evict_ratio=ratio,
            evict_start_threshold=threshold,
            track_ids=track_ids,
        )
        return Planner({"cpu": tier}, 16, store_after_hits=admission)

    graphs, direct = planner(), planner()
    now = 0.0
    for i, (symbols, gpu, step) in enumerate(reqs):
        now += step
        keys = chain(symbols)
        tokens = 16 * len(keys) - 5
        gpu_blocks = min(gpu, len(keys))
        graph = graphs.run(graphs.plan_get(str(i), keys, tokens, now, gpu_blocks=gpu_blocks))
        graphs.run(graphs.plan_put(str(i), keys, tokens, now))
        served = direct.access(str(i), keys, tokens, now, gpu_blocks=gpu_blocks)
        assert served == graph.served["cpu"]
        assert direct.stats == graphs.stats
        a, b = graphs.tiers["cpu"], direct.tiers["cpu"]
        assert snapshot(a) == snapshot(b)
        assert (a.used, a.evicted_blocks, a.alloc_failures) == (
            b.used,
            b.evicted_blocks,
            b.alloc_failures,
        )
        b.check()
    # The next evictions pick the same blocks, in the same order.
    for _ in range(3):
        graphs.tiers["cpu"].evict(1)
        direct.tiers["cpu"].evict(1)
        assert snapshot(graphs.tiers["cpu"]) == snapshot(direct.tiers["cpu"])
