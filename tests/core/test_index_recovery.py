"""Dropping blocks found bad (``TierIndex.invalidate``) and rebuilding an index from
stored blocks after a restart (``TierIndex.restore``)."""

from __future__ import annotations

import pytest

from flexkv_engine.core.allocator import BlockAllocator
from flexkv_engine.core.graph import CANCELLED
from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.paths import SSD_READ
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.policies import POLICIES, make_policy

from .conftest import chain


def stored(tier: TierIndex, keys: list[int], now: float = 0.0) -> None:
    """Insert ``keys`` (beyond what the tier has) and commit them."""
    ready, present, handle = tier.lookup(keys, now, hit=False)
    assert present == ready
    if ready < len(keys):
        node = tier.insert(handle, keys, len(keys) - ready, now)
        assert node is not None
        tier.commit(node)
    tier.release(handle)


def entries(tier: TierIndex) -> list[tuple[int, int | None, int]]:
    """``(key, parent, id)`` of every block of ``tier``, parents first."""
    out: list[tuple[int, int | None, int]] = []
    stack = [(tier.root, None)]
    while stack:
        node, parent = stack.pop()
        for child in node.children.values():
            prev = parent
            assert child.ids is not None
            for key, block in zip(child.keys, child.ids, strict=True):
                out.append((key, prev, block))
                prev = key
            stack.append((child, prev))
    return out


def idle(tier: TierIndex) -> None:
    tier.check()
    assert tier.root.lock == 0
    assert all(node.lock == 0 and node.ready for node in tier.nodes())


# -- invalidate --------------------------------------------------------------------------


def test_invalidate_drops_the_block_and_everything_below_it() -> None:
    tier = TierIndex("ssd", 16)
    a, b = chain((1, 2, 3, 4)), chain((1, 2, 7, 8, 9))
    stored(tier, a)
    stored(tier, b)
    ready, _, handle = tier.lookup(a, 1.0, hit=True)
    assert ready == 4
    assert tier.invalidate(handle, 1) == 3 + 3  # a[1:] and b[1:] share block 1
    tier.release(handle)
    assert tier.probe(a) == (1, 1) and tier.probe(b) == (1, 1)
    assert tier.used == 1 and tier.dropped_blocks == 6
    idle(tier)
    # Gone already: a second report of the same bad block changes nothing.
    ready, _, handle = tier.lookup(a, 2.0, hit=True)
    assert tier.invalidate(handle, 1) == 0
    tier.release(handle)
    stored(tier, a)  # the blocks can be stored again
    assert tier.probe(a) == (4, 4)
    idle(tier)


def test_ids_of_a_block_other_requests_still_read_stay_held_until_released() -> None:
    tier = TierIndex("ssd", 6)
    keys = chain((1, 2, 3, 4))
    stored(tier, keys)
    _, _, mine = tier.lookup(keys, 1.0, hit=True)
    _, _, theirs = tier.lookup(keys, 1.0, hit=True)  # another GET reading the same blocks
    theirs_ids = tier.block_ids(theirs, 0, 4)
    assert tier.invalidate(mine, 2) == 2
    tier.check()
    # Blocks 2..3 no longer match, but their ids are not free: a PUT cannot land on them
    # while the other GET may still be reading them.
    assert tier.probe(keys) == (2, 2)
    assert tier.used == 4 and tier.free == 2
    other = chain((9, 8, 7, 6))
    _, _, handle = tier.lookup(other, 2.0, hit=False)
    node = tier.insert(handle, other, 4, 2.0)
    assert node is not None and node.n == 2  # only the two free ids; locked blocks stay
    assert set(tier.block_ids(node, 0, 2)).isdisjoint(theirs_ids)
    tier.abort(node)
    tier.release(handle)
    tier.release(mine)
    assert tier.used == 4
    tier.release(theirs)  # the last lock: ids of the dropped blocks are free now
    assert tier.used == 2
    idle(tier)


def test_a_write_below_a_dropped_block_ends_cleanly_either_way() -> None:
    tier = TierIndex("ssd", 8)
    base = chain((1, 2, 3))
    longer = chain((1, 2, 3, 4, 5))
    stored(tier, base)
    for finish in ("commit", "abort"):
        _, _, put_handle = tier.lookup(longer, 1.0, hit=False)
        writing = tier.insert(put_handle, longer, 2, 1.0)
        assert writing is not None
        _, _, get_handle = tier.lookup(base, 1.0, hit=True)
        assert tier.invalidate(get_handle, 1) == 2 + 2
        tier.release(get_handle)
        tier.check()
        assert tier.used == 1 + 2 + 2  # block 0, the dropped ones locked or being written
        getattr(tier, finish)(writing)  # the write ends after its parent was dropped
        tier.release(put_handle)
        assert tier.probe(longer) == (1, 1) and tier.used == 1
        idle(tier)
        stored(tier, base)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_eviction_after_invalidate_never_sees_dropped_nodes(name: str) -> None:
    tier = TierIndex("ssd", 12, make_policy(name))
    for i in range(4):
        stored(tier, chain((i, 10, 11)), float(i))
    _, _, handle = tier.lookup(chain((2, 10, 11)), 5.0, hit=True)
    assert tier.invalidate(handle, 0) == 3
    tier.release(handle)
    stored(tier, chain((7, 7, 7, 7, 7, 7)), 6.0)  # 9 + 6 > 12: evicts
    assert tier.used <= 12
    assert tier.probe(chain((2, 10, 11))) == (0, 0)
    idle(tier)


def test_planner_drops_the_source_of_a_failed_read() -> None:
    p = Planner({"cpu": TierIndex("cpu", 8), "ssd": TierIndex("ssd", 8)}, 16)
    keys = chain((1, 2, 3, 4))
    p.run(p.plan_put("w", keys, 64, 0.0))
    p.tiers["cpu"].evict(8)
    graph = p.plan_get("r", keys, 64, 1.0)
    read = next(op for op in graph.ops if op.path == SSD_READ)
    assert p.invalidate_source(read) == 4
    p.complete(graph, read, ok=False)
    assert graph.done and graph.ops[-1].status == CANCELLED
    assert p.tiers["ssd"].probe(keys) == (0, 0)
    graph = p.run(p.plan_get("r2", keys, 64, 2.0))
    assert graph.ops == [] and p.stats.tokens_by_tier["ssd"] == 0  # a miss, not an error
    p.run(p.plan_put("w2", keys, 64, 3.0))
    assert p.tiers["ssd"].probe(keys) == (4, 4)  # stored again by the next PUT
    for tier in p.tiers.values():
        idle(tier)


# -- restore -------------------------------------------------------------------------------


def test_restore_rebuilds_the_same_tree_with_the_same_ids() -> None:
    before = TierIndex("ssd", 32)
    paths = [(1, 2, 3, 4), (1, 2, 5), (1, 2, 5, 6, 7), (8, 9), (1, 3)]
    for i, path in enumerate(paths):
        stored(before, chain(path), float(i))
    after = TierIndex("ssd", 32)
    restored = after.restore(entries(before), float("-inf"))
    assert sorted(restored) == sorted(b for _, _, b in entries(before))
    for path in paths:
        keys = chain(path)
        assert after.probe(keys) == (len(keys), len(keys))
        _, _, h1 = before.lookup(keys, 9.0, hit=False)
        _, _, h2 = after.lookup(keys, 9.0, hit=False)
        assert after.block_ids(h2, 0, len(keys)) == before.block_ids(h1, 0, len(keys))
        before.release(h1)
        after.release(h2)
    assert isinstance(after.allocator, BlockAllocator)
    assert after.allocator.free_ids() == sorted(set(range(32)) - set(restored))
    idle(after)
    stored(after, chain((4, 4, 4)), 10.0)  # new blocks take free ids only
    idle(after)


def test_restore_skips_orphans_stale_duplicates_and_bad_ids() -> None:
    a = chain((1, 2, 3))
    orphan = chain((5, 6, 7))
    tier = TierIndex("ssd", 8)
    restored = tier.restore(
        [
            (a[0], None, 0),
            (a[1], a[0], 1),
            (a[2], a[1], 2),
            (orphan[2], orphan[1], 3),  # its parent was not stored: unreachable
            (a[2], a[1], 4),  # the same key again, later: the later copy wins
            (orphan[0], None, 2),  # reuses id 2 after a[2] left it: wins id 2
            (orphan[1], orphan[0], 99),  # out of range
        ],
        0.0,
    )
    assert sorted(restored) == [0, 1, 2, 4]
    assert tier.probe(a) == (3, 3) and tier.probe(orphan) == (1, 1)
    _, _, handle = tier.lookup(a, 1.0, hit=False)
    assert tier.block_ids(handle, 0, 3) == [0, 1, 4]
    tier.release(handle)
    idle(tier)
    with pytest.raises(ValueError, match="empty index"):
        tier.restore([], 0.0)


def test_restored_blocks_are_evicted_oldest_stored_first() -> None:
    tier = TierIndex("ssd", 6)
    old, new = chain((1, 1, 1)), chain((2, 2, 2))
    stored_entries = [(old[0], None, 0), (old[1], old[0], 1), (old[2], old[1], 2)]
    stored_entries += [(new[0], None, 3), (new[1], new[0], 4), (new[2], new[1], 5)]
    tier.restore(stored_entries, float("-inf"))
    stored(tier, chain((3, 3, 3)), 0.0)  # needs 3 blocks: the older chain goes
    assert tier.probe(old) == (0, 0) and tier.probe(new) == (3, 3)
    idle(tier)
