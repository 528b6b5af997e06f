"""The C++ index (core/native_index.py, csrc/index) against core/index.py, call by call.

Random operation sequences (lookup, probe, insert, commit, abort, pin, release, evict,
invalidate, block ids, restore, get_put) drive a Python and a native index side by side, over
every policy with and without its parameters, with and without block ids; every call
must return the same thing, and both indexes must then hold the same nodes with the
same locks, access state, queue tickets and ids.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flexkv_engine.core.index import TierIndex, make_tier_index
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.policies import LRU, POLICIES, EvictionPolicy, make_policy

from .conftest import chain

try:
    from flexkv_engine.core.native_index import NativeTierIndex
except ImportError as exc:
    pytest.skip(f"native module not importable: {exc}", allow_module_level=True)

paths = st.lists(st.integers(0, 3), min_size=1, max_size=9)
NODE_FIELDS = (
    "start",
    "end",
    "n",
    "ready",
    "lock",
    "last",
    "seq",
    "hits",
    "created",
    "cseq",
    "ticket",
    "removed",
)

FAILED = object()  # what both() returns when both raised the same error

POLICY_SETTINGS = [
    ("lru", {}),
    ("lru", {"hit_reward_seconds": 0.5}),
    ("lru", {"hit_reward_seconds": 3.0}),
    ("lfu", {}),
    ("slru", {"slru_protected_threshold": 1}),
    ("slru", {"slru_protected_threshold": 2}),
    ("slru", {"slru_protected_threshold": 3}),
    ("fifo", {}),
    ("mru", {}),
    ("filo", {}),
]


def state(node, track_ids: bool) -> tuple:
    fields = tuple(getattr(node, f) for f in NODE_FIELDS)
    return (*fields, tuple(node.keys), tuple(node.ids) if track_ids else node.ids)


def same(py, nat, track_ids: bool) -> None:
    if py is None or nat is None:
        assert py is None and nat is None
        return
    assert state(py, track_ids) == state(nat, track_ids)


def tree(index, track_ids: bool) -> list[tuple]:
    return sorted(state(n, track_ids) for n in index.nodes())


class IndexPair(RuleBasedStateMachine):
    """A Python and a native index receiving the same calls."""

    @initialize(
        policy=st.sampled_from(POLICY_SETTINGS),
        capacity=st.integers(0, 14),
        evict_ratio=st.sampled_from([0.0, 0.2, 0.5]),
        threshold=st.sampled_from([1.0, 0.8, 0.5]),
        track_ids=st.booleans(),
        restore=st.lists(st.tuples(paths, st.integers(0, 16)), max_size=4),
    )
    def setup(self, policy, capacity, evict_ratio, threshold, track_ids, restore) -> None:
        name, params = policy
        self.track_ids = track_ids

        def build(native: bool):
            return make_tier_index(
                "cpu",
                capacity,
                make_policy(name, **params),
                evict_ratio=evict_ratio,
                evict_start_threshold=threshold,
                track_ids=track_ids,
                native=native,
            )

        self.py, self.nat = build(False), build(True)
        assert isinstance(self.py, TierIndex) and isinstance(self.nat, NativeTierIndex)
        self.locks: list[tuple] = []  # (python handle, native handle)
        self.writing: list[tuple] = []
        self.now = 0.0
        if track_ids and restore:
            entries = []
            for symbols, block in restore:
                keys = chain(symbols)
                entries.extend(
                    (k, keys[i - 1] if i else None, block + i) for i, k in enumerate(keys)
                )
            got = self.py.restore(entries, -math.inf)
            assert self.nat.restore(entries, -math.inf) == got

    def both(self, method: str, *args, **kwargs):
        """Call ``method`` on both; the same result or the same exception."""
        outcomes = []
        for index, pick in ((self.py, 0), (self.nat, 1)):
            mapped = [
                a[pick]
                if isinstance(a, tuple)
                and len(a) == 2
                and a[0] is not None
                and hasattr(a[0], "ready")
                else a
                for a in args
            ]
            try:
                outcomes.append(("ok", getattr(index, method)(*mapped, **kwargs)))
            except (ValueError, IndexError, KeyError) as exc:
                outcomes.append((type(exc), str(exc)))
        (py_kind, py_out), (nat_kind, nat_out) = outcomes
        assert py_kind == nat_kind, (method, outcomes)
        if py_kind != "ok":
            assert py_out == nat_out, (method, outcomes)
            return FAILED, FAILED
        return py_out, nat_out

    def tick(self, step: float) -> float:
        self.now += step
        return self.now

    @rule(
        symbols=paths,
        hit=st.booleans(),
        step=st.sampled_from([0.0, 0.25, 1.0, 5.0]),
        cut=st.integers(0, 10),
        insert=st.booleans(),
        extra=st.integers(0, 6),
    )
    def lookup(self, symbols, hit, step, cut, insert, extra) -> None:
        keys = chain(symbols)
        now = self.tick(step)
        limit = None if cut >= len(keys) else cut
        py, nat = self.both("lookup", keys, now, hit=hit, limit=limit)
        assert py[:2] == nat[:2]
        same(py[2], nat[2], self.track_ids)
        pair = (py[2], nat[2])
        self.locks.append(pair)
        ready, present = py[:2]
        if insert and present == ready < len(keys):
            count = min(len(keys) - ready, extra + 1)
            py_node, nat_node = self.both("insert", pair, keys, count, now)
            if py_node is FAILED:
                return
            same(py_node, nat_node, self.track_ids)
            if py_node is not None:
                self.writing.append((py_node, nat_node))

    @rule(symbols=paths, step=st.sampled_from([0.0, 1.0]), store=st.integers(0, 10))
    def get_put(self, symbols, step, store) -> None:
        keys = chain(symbols)
        py, nat = self.both("get_put", keys, self.tick(step), min(store, len(keys)))
        assert py == nat

    @rule(symbols=paths)
    def probe(self, symbols) -> None:
        py, nat = self.both("probe", chain(symbols))
        assert py == nat

    @precondition(lambda self: self.writing)
    @rule(data=st.data(), ok=st.booleans())
    def finish_write(self, data, ok) -> None:
        pair = data.draw(st.sampled_from(self.writing))
        self.writing.remove(pair)
        self.both("commit" if ok else "abort", pair)

    @precondition(lambda self: self.locks)
    @rule(data=st.data())
    def release(self, data) -> None:
        pair = data.draw(st.sampled_from(self.locks))
        self.locks.remove(pair)
        self.both("release", pair)

    @precondition(lambda self: self.writing)
    @rule(data=st.data())
    def pin(self, data) -> None:
        pair = data.draw(st.sampled_from(self.writing))
        py, nat = self.both("pin", pair)
        assert py is pair[0] and nat is pair[1]
        self.locks.append(pair)

    @rule(count=st.integers(0, 8))
    def evict(self, count) -> None:
        py, nat = self.both("evict", count)
        assert py == nat

    @precondition(lambda self: self.locks)
    @rule(data=st.data(), start=st.integers(0, 9))
    def invalidate(self, data, start) -> None:
        pair = data.draw(st.sampled_from(self.locks))
        py, nat = self.both("invalidate", pair, start)
        assert py == nat

    @precondition(lambda self: self.locks and self.track_ids)
    @rule(data=st.data(), start=st.integers(0, 9), length=st.integers(0, 9))
    def block_ids(self, data, start, length) -> None:
        pair = data.draw(st.sampled_from(self.locks))
        py, nat = self.both("block_ids", pair, start, start + length)
        assert py == nat

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "py"):
            return
        self.py.check()
        self.nat.check()
        for attr in (
            "used",
            "free",
            "capacity",
            "num_nodes",
            "evicted_blocks",
            "evictions",
            "alloc_failures",
            "dropped_blocks",
        ):
            assert getattr(self.py, attr) == getattr(self.nat, attr), attr
        assert self.py.root.lock == self.nat.root.lock
        assert tree(self.py, self.track_ids) == tree(self.nat, self.track_ids)
        for pair in self.locks + self.writing:
            same(*pair, self.track_ids)


TestIndexPair = IndexPair.TestCase
TestIndexPair.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)


def access_stream(seed: int, requests: int) -> list[tuple[float, list[int], int]]:
    rng = random.Random(seed)
    prefixes = [[rng.randrange(50) for _ in range(rng.randrange(1, 12))] for _ in range(20)]
    out = []
    for i in range(requests):
        symbols = [*rng.choice(prefixes), *(rng.randrange(6) for _ in range(rng.randrange(9)))]
        out.append((i * 0.5, chain(symbols), 16 * len(symbols) - rng.randrange(16)))
    return out


@pytest.mark.parametrize(("name", "params"), POLICY_SETTINGS)
@pytest.mark.parametrize("admission", [0, 2])
def test_planner_access_is_the_same_on_both(name, params, admission) -> None:
    """The twin's hit-rate path: the same stats and served ranges, request by request."""
    planners = []
    for native in (False, True):
        policy: EvictionPolicy = make_policy(name, **params)
        tier = make_tier_index("cpu", 40, policy, evict_ratio=0.1, track_ids=False, native=native)
        planners.append(Planner({"cpu": tier}, 16, store_after_hits=admission))
    for i, (t, keys, tokens) in enumerate(access_stream(7, 400)):
        served = [p.access(f"r{i}", keys, tokens, t, gpu_blocks=i % 3) for p in planners]
        assert served[0] == served[1], i
    py, nat = planners
    assert py.stats == nat.stats
    assert tree(py.cpu, False) == tree(nat.cpu, False)


def test_make_tier_index_takes_native_when_built_and_falls_back_for_other_policies() -> None:
    assert isinstance(make_tier_index("cpu", 4), NativeTierIndex)
    assert isinstance(make_tier_index("cpu", 4, native=False), TierIndex)

    class Custom(LRU):
        name = "custom"

    assert isinstance(make_tier_index("cpu", 4, Custom()), TierIndex)
    with pytest.raises(ValueError, match="no eviction policy Custom"):
        make_tier_index("cpu", 4, Custom(), native=True)
    with pytest.raises(ValueError, match="evict_ratio must be in"):
        make_tier_index("cpu", 4, evict_ratio=2.0, native=True)
    assert sorted(POLICIES) == ["fifo", "filo", "lfu", "lru", "mru", "slru"]
