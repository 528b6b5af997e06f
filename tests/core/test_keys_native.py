"""The native block keys (csrc/keys) against core/keys.py's own path, key by key."""

from __future__ import annotations

import array
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexkv_engine.core import keys
from flexkv_engine.core.keys import block_keys, namespace_root, python_block_keys

try:
    from flexkv_engine import _native
except ImportError as exc:  # the Python fallback is all there is
    pytest.skip(f"native module not importable: {exc}", allow_module_level=True)
if not hasattr(_native, "block_keys"):
    pytest.skip("the native module was built without block keys", allow_module_level=True)

INT64 = st.integers(-(2**63), 2**63 - 1)
NAMESPACES = st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=300))


def ns_bytes(namespace: str | bytes | None) -> bytes:
    return namespace.encode() if isinstance(namespace, str) else (namespace or b"")


def test_block_keys_takes_the_native_path_when_built() -> None:
    assert keys.native_block_keys() is _native.block_keys


@settings(max_examples=300)
@given(
    st.lists(INT64, max_size=400),
    st.one_of(st.integers(1, 40), st.sampled_from([64, 128, 512, 10**12])),
    NAMESPACES,
)
def test_native_keys_equal_python_keys(tokens, tokens_per_block, namespace) -> None:
    want = python_block_keys(tokens, tokens_per_block, namespace)
    ns = ns_bytes(namespace)
    assert _native.block_keys(tokens, tokens_per_block, ns) == want
    assert _native.block_keys(tuple(tokens), tokens_per_block, ns) == want
    assert _native.block_keys(np.array(tokens, dtype=np.int64), tokens_per_block, ns) == want
    packed = struct.pack(f"<{len(tokens)}q", *tokens)
    assert _native.block_keys_le64(packed, tokens_per_block, ns) == want
    assert block_keys(tokens, tokens_per_block, namespace) == want


@given(NAMESPACES)
def test_native_namespace_root_equals_python(namespace) -> None:
    assert _native.namespace_root(ns_bytes(namespace)) == namespace_root(namespace)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_every_integer_dtype_is_read_in_place(dtype) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    tokens = rng.integers(info.min, min(info.max, 2**63 - 1), size=333, dtype=dtype)
    want = python_block_keys([int(t) for t in tokens], 16)
    assert _native.block_keys(tokens, 16, b"") == want
    assert block_keys(tokens, 16) == want


def test_array_module_buffers_and_views() -> None:
    tokens = list(range(1000, 1100))
    want = python_block_keys(tokens, 7, "ns")
    assert _native.block_keys(array.array("q", tokens), 7, b"ns") == want
    assert _native.block_keys(array.array("i", tokens), 7, b"ns") == want
    assert _native.block_keys(memoryview(array.array("l", tokens)), 7, b"ns") == want
    assert block_keys(np.arange(1000, 1100)[::1], 7, "ns") == want


def test_refused_input_takes_the_python_path_and_its_errors() -> None:
    with pytest.raises(OverflowError):
        _native.block_keys([2**63], 16, b"")
    with pytest.raises(struct.error):
        block_keys([2**63], 16)
    with pytest.raises(struct.error):
        block_keys([1.5], 16)
    with pytest.raises(TypeError):
        _native.block_keys(np.ones((2, 2), dtype=np.int64), 16, b"")
    with pytest.raises(ValueError, match="8-byte"):
        _native.block_keys_le64(b"\x00" * 9, 16, b"")
    with pytest.raises(ValueError, match="tokens_per_block must be >= 1"):
        block_keys([1], 0)
    assert block_keys(range(40), 16) == python_block_keys(list(range(40)), 16)
    assert block_keys(np.array([2**63], dtype=np.uint64)[:0], 16) == []
    with pytest.raises(struct.error):
        block_keys(np.array([2**63], dtype=np.uint64), 16)
