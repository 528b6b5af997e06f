"""Tests of the native module `flexkv_engine._native` (build facts, CUDA probe, CRC-32C)."""

from __future__ import annotations

import importlib.metadata
import random
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flexkv_engine
from flexkv_engine import _native

CRC32C_FUNCS = [_native.crc32c, _native.crc32c_portable]


def _reference_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _reference_table()


def crc32c_reference(data: bytes, value: int = 0) -> int:
    """Byte-at-a-time CRC-32C (Castagnoli, reflected, pre- and post-inverted)."""
    crc = value ^ 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


# ---- build facts ------------------------------------------------------------------------


def test_build_info_keys_and_types() -> None:
    info = _native.build_info()
    assert isinstance(info["version"], str)
    assert isinstance(info["cuda"], bool)
    assert isinstance(info["io_uring"], bool)
    assert isinstance(info["compiler"], str)
    assert info["compiler"]
    assert info["crc32c"] in {"sse4.2", "slicing-by-8"}
    if info["cuda"]:
        assert isinstance(info["cuda_runtime"], int)
        assert info["cuda_runtime"] > 0
        assert isinstance(info["cuda_compiler"], str)
    else:
        assert info["cuda_runtime"] is None
        assert info["cuda_compiler"] is None


def test_build_info_version_matches_package() -> None:
    version = _native.build_info()["version"]
    assert version == importlib.metadata.version("flexkv-twin")
    assert version == flexkv_engine.__version__


# ---- CUDA probe ---------------------------------------------------------------------------


def test_cuda_device_count_never_raises() -> None:
    count = _native.cuda_device_count()
    assert isinstance(count, int)
    assert count >= 0
    if not _native.build_info()["cuda"]:
        assert count == 0
    assert _native.cuda_device_count() == count  # a failed probe leaves no sticky error


@pytest.mark.gpu
def test_cuda_device_count_sees_the_gpu() -> None:
    if not _native.build_info()["cuda"]:
        pytest.skip("native module was built without CUDA (no nvcc at build time)")
    import torch

    assert _native.cuda_device_count() >= 1
    assert _native.cuda_device_count() == torch.cuda.device_count()


# ---- CRC-32C --------------------------------------------------------------------------------

# RFC 3720 (iSCSI) B.4 test vectors, plus the usual check value.
KNOWN_VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("crc32c", CRC32C_FUNCS)
@pytest.mark.parametrize(("data", "expected"), KNOWN_VECTORS)
def test_crc32c_known_vectors(crc32c, data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert crc32c_reference(data) == expected


@pytest.mark.parametrize("crc32c", CRC32C_FUNCS)
def test_crc32c_every_length_and_alignment(crc32c) -> None:
    rng = random.Random(1234)
    blob = rng.randbytes(300)
    view = memoryview(blob)
    for start in range(9):  # unaligned heads of the 8-byte loops
        for length in range(140):
            chunk = view[start : start + length]
            assert crc32c(chunk) == crc32c_reference(bytes(chunk)), (start, length)


@pytest.mark.parametrize("crc32c", CRC32C_FUNCS)
def test_crc32c_buffer_types(crc32c) -> None:
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, size=4099, dtype=np.uint8)
    data = raw.tobytes()
    expected = crc32c_reference(data)
    assert crc32c(data) == expected
    assert crc32c(bytearray(data)) == expected
    assert crc32c(memoryview(data)) == expected
    assert crc32c(raw) == expected
    assert crc32c(raw[5:-3]) == crc32c_reference(data[5:-3])
    assert crc32c(memoryview(data)[17:1000]) == crc32c_reference(data[17:1000])

    floats = rng.standard_normal((64, 33)).astype(np.float32)  # C-contiguous 2-D
    assert crc32c(floats) == crc32c_reference(floats.tobytes())
    words = rng.integers(-(2**62), 2**62, size=513, dtype=np.int64)
    assert crc32c(words) == crc32c_reference(words.tobytes())
    assert crc32c(memoryview(words).cast("B")[3:]) == crc32c_reference(words.tobytes()[3:])


@pytest.mark.parametrize("crc32c", CRC32C_FUNCS)
def test_crc32c_continues_from_value(crc32c) -> None:
    rng = random.Random(99)
    a, b = rng.randbytes(1000), rng.randbytes(777)
    assert crc32c(b, crc32c(a)) == crc32c(a + b)
    assert crc32c(b, value=crc32c(a)) == crc32c_reference(b, crc32c_reference(a))


def test_crc32c_parity_on_large_buffer() -> None:
    data = np.random.default_rng(3).integers(0, 256, size=(1 << 20) + 13, dtype=np.uint8)
    assert _native.crc32c(data) == _native.crc32c_portable(data)
    assert _native.crc32c(data[1:]) == _native.crc32c_portable(data[1:])


def test_crc32c_rejects_non_contiguous_and_non_buffers() -> None:
    with pytest.raises((BufferError, ValueError)):
        _native.crc32c(memoryview(bytes(64))[::2])
    with pytest.raises((BufferError, ValueError)):
        _native.crc32c(np.zeros((8, 8), dtype=np.uint8)[:, 1])
    with pytest.raises(TypeError):
        _native.crc32c("not bytes")
    with pytest.raises(TypeError):
        _native.crc32c(b"x", -1)
    with pytest.raises(TypeError):
        _native.crc32c(b"x", 1 << 32)


def test_crc32c_from_threads() -> None:
    """The GIL is released while checksumming: concurrent calls must agree."""
    rng = np.random.default_rng(11)
    buffers = [rng.integers(0, 256, size=1 << 18, dtype=np.uint8) for _ in range(4)]
    expected = [_native.crc32c_portable(b) for b in buffers]
    results: list[list[int]] = [[] for _ in buffers]

    def work(i: int) -> None:
        results[i] = [_native.crc32c(buffers[i]) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(buffers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in enumerate(results):
        assert got == [expected[i]] * 20


@given(st.binary(max_size=2048), st.integers(0, 0xFFFFFFFF))
def test_crc32c_matches_reference(data: bytes, value: int) -> None:
    assert _native.crc32c(data, value) == crc32c_reference(data, value)
    assert _native.crc32c_portable(data, value) == crc32c_reference(data, value)
