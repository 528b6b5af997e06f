"""make_tier_index: the Python index wherever the native one cannot serve."""

from __future__ import annotations

import sys

import pytest

from flexkv_engine.core.index import TierIndex, make_tier_index


def test_without_the_native_module_the_python_index_serves(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "flexkv_engine.core.native_index", None)  # as if absent
    tier = make_tier_index("cpu", 8, evict_ratio=0.25)
    assert type(tier) is TierIndex
    assert (tier.capacity, tier.evict_ratio, tier.track_ids) == (8, 0.25, True)
    with pytest.raises(ImportError):
        make_tier_index("cpu", 8, native=True)


def test_native_false_is_the_python_index() -> None:
    assert type(make_tier_index("ssd", 4, native=False, track_ids=False)) is TierIndex
