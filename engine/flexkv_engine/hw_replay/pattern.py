"""Block contents derived from block keys, so any loaded block can be checked exactly.

Block ``k`` holds the 64-bit words ``(i * GOLDEN) ^ seed(k)`` for ``i = 0, 1, ...``: cheap
to generate on the device, different for every key and every word position, so a block
from the wrong key, a torn block or a stale one never passes the check.

The batched forms (:func:`fill_slots`, :func:`mismatched_slots`) generate and compare
many blocks with a few tensor operations per chunk, so the harness's own work stays small
beside the transfers it checks (a replay under load runs it for every request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..layout import KVLayout
from ..storage.host_pool import torch_dtype

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit int
_MASK63 = (1 << 63) - 1
CHUNK_BYTES = 64 << 20  # blocks generated at once: bounds the scratch memory


def _seed(key: int) -> int:
    return (key ^ (key >> 64) ^ (key >> 127)) & _MASK63


def _words(layout: KVLayout, device: Any) -> Any:
    import torch

    if layout.block_bytes % 8:
        raise ValueError(f"block of {layout.block_bytes} bytes is not a multiple of 8")
    return torch.arange(layout.block_bytes // 8, dtype=torch.int64, device=device) * _GOLDEN


def _block_words(layout: KVLayout, keys: Sequence[int], device: Any) -> Any:
    """The 64-bit words of the blocks of ``keys``, shape ``(len(keys), words)``."""
    import torch

    seeds = torch.tensor([_seed(k) for k in keys], dtype=torch.int64, device=device)
    return _words(layout, device)[None, :] ^ seeds[:, None]


def expected_blocks(layout: KVLayout, keys: Sequence[int], device: Any) -> Any:
    """The blocks of ``keys``, shape ``(len(keys), *block_shape)``, the layout's dtype."""
    words = _block_words(layout, keys, device)
    return words.view(torch_dtype(layout.dtype)).view(len(keys), *layout.block_shape())


def expected_block(layout: KVLayout, key: int, device: Any) -> Any:
    """The block of ``key`` in block-first shape and the layout's dtype."""
    return expected_blocks(layout, [key], device)[0]


def _chunks(layout: KVLayout, n: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_BYTES // max(layout.block_bytes, 1))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _word_aligned(kv: Any) -> bool:
    """Whether the cache's last dimension holds whole 64-bit words."""
    return kv.shape[-1] * kv.element_size() % 8 == 0 and kv.stride(-1) == 1


def _as_words(kv: Any) -> Any:
    """The layer-first cache seen as 64-bit words in its last dimension."""
    import torch

    return kv.view(torch.int64)


def _template(layout: KVLayout, kv: Any) -> Any:
    """Word ``i`` of every block before the key's seed: ``i * GOLDEN``, in the shape of
    one slot of the layer-first cache as words."""
    words = _as_words(kv)
    return _words(layout, kv.device).view(words.shape[0], words.shape[1], *words.shape[3:])


def fill_slots(kv: Any, layout: KVLayout, slots: Sequence[int], keys: Sequence[int]) -> None:
    """Write the block of ``keys[i]`` into GPU slot ``slots[i]`` of a layer-first cache.

    One pass over each block: the word template XOR the key's seed, written in place."""
    import torch

    if not slots:
        return
    if not _word_aligned(kv):
        for slot, key in zip(slots, keys, strict=False):
            fill_slot(kv, layout, slot, key)
        return
    words, template = _as_words(kv), _template(layout, kv)
    for slot, key in zip(slots, keys, strict=False):
        torch.bitwise_xor(template, _seed(key), out=words[:, :, slot])


def mismatched_slots(
    kv: Any, layout: KVLayout, slots: Sequence[int], keys: Sequence[int]
) -> list[int]:
    """Positions ``i`` whose slot ``slots[i]`` does not hold the block of ``keys[i]``."""
    import torch

    if not slots:
        return []
    if not _word_aligned(kv):
        return [i for i, (slot, key) in enumerate(zip(slots, keys, strict=False))
                if not slot_matches(kv, layout, slot, key)]
    words, template = _as_words(kv), _template(layout, kv)
    bad: list[int] = []
    for a, b in _chunks(layout, len(slots)):
        index = torch.tensor(list(slots[a:b]), dtype=torch.long, device=kv.device)
        seeds = torch.tensor([_seed(k) for k in keys[a:b]], dtype=torch.int64,
                             device=kv.device)
        got = words.index_select(2, index)  # (layers, kv, n, ...): compared as words
        got ^= seeds.view(1, 1, -1, *([1] * (got.dim() - 3)))
        differs = (got != template.unsqueeze(2)).flatten(3).any(dim=3).any(dim=0).any(dim=0)
        bad.extend(a + int(i) for i in torch.nonzero(differs).flatten().tolist())
    return bad


def fill_slot(kv: Any, layout: KVLayout, slot: int, key: int) -> None:
    """Write the block of ``key`` into GPU slot ``slot`` of a layer-first cache."""
    kv[:, :, slot] = expected_block(layout, key, kv.device)


def slot_matches(kv: Any, layout: KVLayout, slot: int, key: int) -> bool:
    """Whether GPU slot ``slot`` holds exactly the block of ``key`` (bitwise)."""
    import torch

    got = kv[:, :, slot].contiguous().view(torch.uint8)
    want = expected_block(layout, key, kv.device).contiguous().view(torch.uint8)
    return bool(torch.equal(got, want))
