from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexkv_engine.core.keys import (
    block_keys,
    expand_keys,
    num_blocks,
    reblock,
    reblock_factor,
    tokens_in,
)


def test_keys_are_chained_and_depend_on_namespace() -> None:
    a = block_keys(list(range(40)), 16)
    b = block_keys([*range(32), 99, 98], 16)
    assert len(a) == 3 and len(b) == 3
    assert a[:2] == b[:2] and a[2] != b[2]
    assert block_keys([*range(16), 7, *range(17, 40)], 16)[1:] != a[1:]
    assert block_keys(list(range(40)), 16, namespace="tenant-a")[0] != a[0]
    assert all(0 <= k < 1 << 128 for k in a)


def test_partial_block_differs_from_full_block() -> None:
    assert block_keys(list(range(20)), 16)[1] != block_keys(list(range(32)), 16)[1]


@given(st.lists(st.integers(0, 50), min_size=1, max_size=200), st.sampled_from([2, 4]))
def test_reblock_equals_hashing_at_the_coarser_size_boundaries(tokens, factor) -> None:
    fine = block_keys(tokens, 4)
    coarse = reblock(fine, factor)
    assert len(coarse) == num_blocks(len(tokens), 4 * factor)
    for i, key in enumerate(coarse):
        last_fine = min((i + 1) * factor, len(fine)) - 1
        assert key == fine[last_fine]


def test_reblock_factor_refuses_finer_and_non_multiples() -> None:
    assert reblock_factor(16, 64) == 4
    with pytest.raises(ValueError, match="finer than the trace's recorded block size 16"):
        reblock_factor(16, 8)
    with pytest.raises(ValueError, match="not a multiple"):
        reblock_factor(16, 24)


def test_expand_then_reblock_round_trips() -> None:
    coarse = [11, 12, 13]
    fine = expand_keys(coarse, 32, 3 * 512, 16)
    assert len(fine) == 96 and len(set(fine)) == 96
    assert reblock(fine, 32) == coarse
    cut = expand_keys(coarse, 32, 2 * 512 + 17, 16)
    assert len(cut) == 66 and cut[:64] == fine[:64]


def test_tokens_in_caps_at_the_prompt_length() -> None:
    assert tokens_in(0, 3, 512, 1100) == 1100
    assert tokens_in(1, 2, 512, 1100) == 512
    assert tokens_in(2, 3, 512, 1100) == 76


def test_keys_are_blake2b_chained_whichever_path_runs(monkeypatch) -> None:
    import hashlib
    import struct

    from flexkv_engine.core import keys

    root = hashlib.blake2b(b"t", digest_size=16, person=b"flexkv-twin-root").digest()
    first = hashlib.blake2b(root + struct.pack("<2q", 5, -6), digest_size=16).digest()
    second = hashlib.blake2b(first + struct.pack("<q", 7), digest_size=16).digest()
    want = [int.from_bytes(first, "little"), int.from_bytes(second, "little")]
    assert block_keys([5, -6, 7], 2, namespace="t") == want
    monkeypatch.setattr(keys, "_native_keys", [None])  # as where _native is not built
    assert block_keys([5, -6, 7], 2, namespace="t") == want
