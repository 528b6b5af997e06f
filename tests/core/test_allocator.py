from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexkv_engine.core.allocator import BlockAllocator, eviction_target


def test_lowest_ids_first_and_reuse_of_freed_ids() -> None:
    alloc = BlockAllocator(10)
    assert alloc.allocate(3) == [0, 1, 2]
    assert alloc.allocate(2) == [3, 4]
    alloc.release([1, 0])
    assert alloc.allocate(3) == [0, 1, 5]
    assert (alloc.used, alloc.free) == (6, 4)
    alloc.release([4, 2])
    assert sorted(alloc.allocate(4)) == [2, 4, 6, 7]


def test_over_allocation_is_refused() -> None:
    alloc = BlockAllocator(2)
    with pytest.raises(ValueError, match="cannot allocate 3 blocks"):
        alloc.allocate(3)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 5)), max_size=40))
def test_used_plus_free_is_capacity_and_ids_are_unique(steps) -> None:
    alloc = BlockAllocator(16)
    held: list[int] = []
    for take, n in steps:
        if take and n <= alloc.free:
            lowest = alloc.free_ids()[:n]
            got = alloc.allocate(n)
            assert sorted(got) == lowest
            assert not set(got) & set(held)
            held += got
        elif held:
            alloc.release(held[:n])
            del held[:n]
        assert alloc.used + alloc.free == 16
        assert sorted(held + alloc.free_ids()) == list(range(16))


@pytest.mark.parametrize(
    ("used", "need", "ratio", "threshold", "expected"),
    [
        (5, 3, 0.0, 1.0, 0),  # fits, under threshold: nothing
        (9, 3, 0.0, 1.0, 2),  # shortfall only
        (9, 3, 0.5, 1.0, 5),  # evict_ratio x capacity wins
        (7, 1, 0.0, 0.7, 1),  # at the threshold: back under it
        (8, 2, 0.1, 0.7, 3),  # threshold target beats shortfall and ratio
        (2, 1, 0.3, 0.7, 0),  # below threshold and fits: ratio alone does not trigger
    ],
)
def test_eviction_target_follows_flexkv_rule(used, need, ratio, threshold, expected) -> None:
    assert eviction_target(10, used, need, ratio, threshold) == expected


def test_taking_every_free_id_still_hands_them_out_lowest_first() -> None:
    alloc = BlockAllocator(6)
    assert alloc.allocate(6) == [0, 1, 2, 3, 4, 5]
    alloc.release([5, 2, 4])
    assert alloc.allocate(3) == [2, 4, 5]  # consecutive ids stay consecutive: one SSD I/O
