"""Block keys of many sequences in one call: the native lanes against the per-sequence path."""

from __future__ import annotations

import array
import random
import struct

import numpy as np
import pytest

from flexkv_engine.core import keys
from flexkv_engine.core.keys import block_keys_batch, python_block_keys, python_block_keys_batch

try:
    from flexkv_engine import _native
except ImportError as exc:  # the Python fallback is all there is
    pytest.skip(f"native module not importable: {exc}", allow_module_level=True)
if not hasattr(_native, "block_keys_many"):
    pytest.skip("the native module was built without batched block keys", allow_module_level=True)

IMPLEMENTATIONS = _native.block_keys_implementations()


def random_batch(rng: random.Random, tokens_per_block: int) -> list[list[int]]:
    """1..20 sequences (lanes partly filled), lengths 0..5 blocks and a bit, any int64."""
    count = rng.randint(1, 20)
    top = 5 * tokens_per_block + 3
    return [
        [rng.randrange(-(2**63), 2**63) for _ in range(rng.randint(0, top))] for _ in range(count)
    ]


def as_kind(seq: list[int], kind: int) -> object:
    if kind == 0:
        return seq
    if kind == 1:
        return tuple(seq)
    if kind == 2:
        return np.array(seq, dtype=np.int64)
    return array.array("q", seq)


@pytest.mark.parametrize("tokens_per_block", [16, 512, 1, 7])
@pytest.mark.parametrize("seed", range(6))
def test_batch_equals_per_sequence_python_keys(tokens_per_block: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + tokens_per_block)
    seqs = random_batch(rng, tokens_per_block)
    namespace = rng.choice([None, "", "tenant-a", b"\x00lora\xff" * 9])
    want = [python_block_keys(s, tokens_per_block, namespace) for s in seqs]
    mixed = [as_kind(s, rng.randrange(4)) for s in seqs]
    assert block_keys_batch(mixed, tokens_per_block, namespace) == want
    assert python_block_keys_batch(seqs, tokens_per_block, namespace) == want
    ns = keys._ns_bytes(namespace)
    for name in IMPLEMENTATIONS:
        assert _native.block_keys_many(mixed, tokens_per_block, ns, implementation=name) == want
    packed = [struct.pack(f"<{len(s)}q", *s) for s in seqs]
    assert _native.block_keys_many(packed, tokens_per_block, ns, le64=True) == want


@pytest.mark.parametrize("tokens_per_block", [16, 512])
def test_one_namespace_per_sequence(tokens_per_block: int) -> None:
    rng = random.Random(tokens_per_block)
    seqs = random_batch(rng, tokens_per_block)
    spaces = [rng.choice([None, "a", "b/c", b"raw"]) for _ in seqs]
    want = [python_block_keys(s, tokens_per_block, n) for s, n in zip(seqs, spaces, strict=True)]
    assert block_keys_batch(seqs, tokens_per_block, spaces) == want
    assert block_keys_batch(seqs, tokens_per_block, tuple(spaces)) == want
    assert python_block_keys_batch(seqs, tokens_per_block, spaces) == want
    with pytest.raises(ValueError, match="one per sequence"):
        block_keys_batch(seqs, tokens_per_block, [*spaces, None])


def test_portable_lanes_equal_the_fastest_on_long_uneven_batches() -> None:
    rng = random.Random(5)
    lengths = [0, 1, 15, 16, 17, 511, 512, 513, 3000, 12000, 7, 40, 9999]
    seqs = [np.array([rng.randrange(128000) for _ in range(n)], dtype=np.int64) for n in lengths]
    for tpb in (16, 512):
        want = [python_block_keys(s.tolist(), tpb, "ns") for s in seqs]
        best = _native.block_keys_many(seqs, tpb, b"ns")
        assert best == want
        assert _native.block_keys_many(seqs, tpb, b"ns", implementation="portable") == best
        assert _native.block_keys_many(seqs, tpb, b"ns", implementation="serial") == best


def test_implementation_names() -> None:
    name = _native.block_keys_implementation()
    assert name in IMPLEMENTATIONS
    assert {"portable", "serial"} <= set(IMPLEMENTATIONS)
    assert name in {"avx512", "avx2", "serial"}
    with pytest.raises(ValueError, match="choose from: avx512, avx2, portable, serial"):
        _native.block_keys_many([[1]], 16, b"", implementation="sse9")


def test_refused_input_takes_each_sequence_path_and_its_errors() -> None:
    assert block_keys_batch([], 16) == []
    assert block_keys_batch([range(40), [1, 2]], 16) == [
        python_block_keys(list(range(40)), 16),
        python_block_keys([1, 2], 16),
    ]
    with pytest.raises(OverflowError):
        _native.block_keys_many([[1], [2**63]], 16, b"")
    with pytest.raises(struct.error):
        block_keys_batch([[1], [2**63]], 16)
    with pytest.raises(ValueError, match="8-byte"):
        _native.block_keys_many([b"\x00" * 9], 16, b"", le64=True)
    with pytest.raises(ValueError, match="tokens_per_block must be >= 1"):
        block_keys_batch([[1]], 0)


def test_batch_without_native_module(monkeypatch) -> None:
    monkeypatch.setattr(keys, "_native_keys", [None])
    monkeypatch.setattr(keys, "_native_keys_many", [None])
    seqs = [list(range(n)) for n in (0, 5, 33)]
    want = [python_block_keys(s, 16, "t") for s in seqs]
    assert block_keys_batch(seqs, 16, "t") == want
    assert block_keys_batch(iter(seqs), 16, "t") == want
    assert block_keys_batch(seqs, 16, "t", threads=2) == want


def big_batch(rng: random.Random, tokens_per_block: int, blocks: int) -> list[np.ndarray]:
    """Sequences of uneven lengths (some empty) holding about ``blocks`` blocks in all."""
    seqs: list[np.ndarray] = []
    while blocks > 0:
        n = rng.choice([0, rng.randint(1, 3), rng.randint(1, 400)]) * tokens_per_block
        n += rng.randrange(tokens_per_block)  # a partial last block, or none
        seqs.append(np.array([rng.randrange(128000) for _ in range(n)], dtype=np.int64))
        blocks -= n // tokens_per_block
    return seqs


# Blocks enough for the automatic count to take several threads: about 2, 33 and 1
# compressions per block at 16, 512 and 7 tokens per block, several times 12,288.
@pytest.mark.parametrize(("tokens_per_block", "blocks"), [(16, 20000), (512, 1500), (7, 30000)])
@pytest.mark.parametrize("seed", range(2))
def test_threads_give_the_same_keys(tokens_per_block: int, blocks: int, seed: int) -> None:
    rng = random.Random(seed * 7919 + tokens_per_block)
    seqs = big_batch(rng, tokens_per_block, blocks)
    rng.shuffle(seqs)
    want = [python_block_keys(s.tolist(), tokens_per_block, "t") for s in seqs]
    assert _native.block_keys_many(seqs, tokens_per_block, b"t", threads=1) == want
    assert _native.block_keys_many(seqs, tokens_per_block, b"t") == want
    for name in IMPLEMENTATIONS:
        for threads in (None, 2, 3, 5, 16, 10**6):
            got = _native.block_keys_many(
                seqs, tokens_per_block, b"t", implementation=name, threads=threads
            )
            assert got == want, (name, threads)
    lists = [s.tolist() for s in seqs]
    assert block_keys_batch(lists, tokens_per_block, "t", threads=3) == want
    assert block_keys_batch(lists, tokens_per_block, "t") == want
    spaces = [rng.choice(["a", b"b", None]) for _ in seqs]
    per_ns = [python_block_keys(s, tokens_per_block, n) for s, n in zip(lists, spaces, strict=True)]
    assert block_keys_batch(lists, tokens_per_block, spaces, threads=2) == per_ns
    packed = [s.astype("<i8").tobytes() for s in seqs]
    assert _native.block_keys_many(packed, tokens_per_block, b"t", le64=True, threads=4) == want


def test_threads_argument() -> None:
    seqs = [list(range(n)) for n in (0, 5, 33, 700)]
    want = [python_block_keys(s, 16) for s in seqs]
    for threads in (1, 2, 8):
        assert block_keys_batch(seqs, 16, threads=threads) == want
    with pytest.raises(ValueError, match="threads must be None or >= 1"):
        block_keys_batch(seqs, 16, threads=0)
    with pytest.raises(ValueError, match="threads must be None or >= 1"):
        _native.block_keys_many(seqs, 16, b"", threads=0)
