"""One contract, every registered policy."""

from __future__ import annotations

import pytest

from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.policies import POLICIES, EvictionPolicy, make_policy

from .conftest import chain

ALL = sorted(POLICIES)


def fill(policy: EvictionPolicy, paths: list[tuple[int, ...]], capacity: int = 64) -> TierIndex:
    index = TierIndex("cpu", capacity, policy)
    for t, symbols in enumerate(paths):
        keys = chain(symbols)
        ready, _, handle = index.lookup(keys, float(t), hit=False)
        if ready < len(keys):
            node = index.insert(handle, keys, len(keys) - ready, float(t))
            assert node is not None
            index.commit(node)
        index.release(handle)
    return index


def test_registry_names_and_unknown_name_error() -> None:
    assert ALL == ["fifo", "filo", "lfu", "lru", "mru", "slru"]
    with pytest.raises(
        ValueError, match=r"unknown eviction_policy 'lruu'; choose from: fifo, filo"
    ):
        make_policy("lruu")


@pytest.mark.parametrize("name", ALL)
def test_evicts_the_leaf_with_the_smallest_priority(name: str) -> None:
    policy = make_policy(name)
    index = fill(policy, [(1, 2), (3,), (1, 4), (5, 6, 7)])
    index.lookup(chain((3,)), 10.0, hit=True)  # a hit on (3,), locked
    leaves = [n for n in index.nodes() if not n.children and n.lock == 0]
    expected = min(leaves, key=policy.priority)
    index.evict(expected.n)
    assert expected.removed
    assert not any(n.removed for n in leaves if n is not expected)
    index.check()


@pytest.mark.parametrize("name", ALL)
def test_never_evicts_locked_unready_or_inner_blocks(name: str) -> None:
    index = fill(make_policy(name), [(1, 2, 3), (1, 2, 4), (9,)])
    _, _, handle = index.lookup(chain((9,)), 5.0, hit=True)  # lock (9,)
    _, _, parent = index.lookup(chain((7,)), 5.0, hit=False)
    node = index.insert(parent, chain((7,)), 1, 5.0)  # unready
    assert node is not None
    evicted = index.evict(100)
    # Everything else goes, deepest first, but not the locked or unready blocks.
    assert evicted == 4
    assert [sorted(n.keys) for n in index.nodes()] in (
        [chain((9,)), chain((7,))],
        [chain((7,)), chain((9,))],
    )
    index.release(handle)
    index.commit(node)
    index.release(parent)
    assert index.evict(100) == 2
    assert index.used == 0
    index.check()


@pytest.mark.parametrize("name", ALL)
def test_eviction_trims_a_run_from_its_deepest_block(name: str) -> None:
    index = fill(make_policy(name), [(1, 2, 3, 4)], capacity=4)
    assert index.evict(1) == 1
    assert index.probe(chain((1, 2, 3, 4))) == (3, 3)
    index.check()


def test_lru_hit_reward_keeps_often_hit_prefixes() -> None:
    plain, rewarded = make_policy("lru"), make_policy("lru", hit_reward_seconds=100)
    for policy, survivor in ((plain, (2,)), (rewarded, (1,))):
        index = fill(policy, [(1,), (2,)])
        _, _, h = index.lookup(chain((1,)), 0.5, hit=True)
        index.release(h)
        _, _, h = index.lookup(chain((2,)), 1.5, hit=False)
        index.release(h)
        index.evict(1)
        assert index.probe(chain(survivor))[0] == 1


def test_slru_protects_after_threshold_hits() -> None:
    index = fill(make_policy("slru", slru_protected_threshold=2), [(1,), (2,)])
    for t in (2.0, 3.0):
        _, _, h = index.lookup(chain((1,)), t, hit=True)
        index.release(h)
    _, _, h = index.lookup(chain((2,)), 4.0, hit=True)
    index.release(h)
    index.evict(1)  # (2,) is more recent but only probationary
    assert index.probe(chain((1,)))[0] == 1 and index.probe(chain((2,)))[0] == 0


@pytest.mark.parametrize(
    ("name", "first_out"), [("fifo", (1,)), ("filo", (3,)), ("lru", (2,)), ("mru", (1,))]
)
def test_insertion_and_recency_orders(name: str, first_out: tuple[int, ...]) -> None:
    index = fill(make_policy(name), [(1,), (2,), (3,)])
    _, _, h = index.lookup(chain((1,)), 9.0, hit=False)  # (1,) most recent
    index.release(h)
    _, _, h = index.lookup(chain((3,)), 8.0, hit=False)
    index.release(h)
    index.evict(1)
    assert index.probe(chain(first_out))[0] == 0
