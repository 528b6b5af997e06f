"""Block contents derived from block keys, so any loaded block can be checked exactly.

Block ``k`` holds the 64-bit words ``(i * GOLDEN) ^ seed(k)`` for ``i = 0, 1, ...``: cheap
to generate on the device, different for every key and every word position, so a block
from the wrong key, a torn block or a stale one never passes the check.
"""

from __future__ import annotations

from typing import Any

from ..layout import KVLayout
from ..storage.host_pool import torch_dtype

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit int
_MASK63 = (1 << 63) - 1


def _seed(key: int) -> int:
    return (key ^ (key >> 64) ^ (key >> 127)) & _MASK63


def expected_block(layout: KVLayout, key: int, device: Any) -> Any:
    """The block of ``key`` in block-first shape and the layout's dtype."""
    import torch

    if layout.block_bytes % 8:
        raise ValueError(f"block of {layout.block_bytes} bytes is not a multiple of 8")
    words = torch.arange(layout.block_bytes // 8, dtype=torch.int64, device=device)
    words = (words * _GOLDEN) ^ _seed(key)
    return words.view(torch_dtype(layout.dtype)).view(layout.block_shape())


def fill_slot(kv: Any, layout: KVLayout, slot: int, key: int) -> None:
    """Write the block of ``key`` into GPU slot ``slot`` of a layer-first cache."""
    kv[:, :, slot] = expected_block(layout, key, kv.device)


def slot_matches(kv: Any, layout: KVLayout, slot: int, key: int) -> bool:
    """Whether GPU slot ``slot`` holds exactly the block of ``key`` (bitwise)."""
    import torch

    got = kv[:, :, slot].contiguous().view(torch.uint8)
    want = expected_block(layout, key, kv.device).contiguous().view(torch.uint8)
    return bool(torch.equal(got, want))
