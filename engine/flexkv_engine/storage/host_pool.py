"""Block-first KV storage in host memory, and the layer-first "GPU" KV cache.

The host pool is one buffer of ``num_blocks * stride`` bytes whose base is 4 KiB aligned
(O_DIRECT reads and writes land in it directly), pinned when CUDA is present so that
copies to and from the GPU run at full PCIe speed. Without a GPU, the serving engine's
KV cache is a CPU tensor of the same layer-first shape, so the whole engine runs for real.
"""

from __future__ import annotations

from typing import Any

from ..layout import ALIGN, KVLayout


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


class HostPool:
    """``num_blocks`` block-first slots; ``block(i)`` is a view of slot ``i``."""

    def __init__(self, layout: KVLayout, num_blocks: int, *, pin: bool = False) -> None:
        import torch

        self.layout = layout
        self.num_blocks = num_blocks
        self.stride = layout.stride
        size = max(num_blocks, 1) * self.stride + ALIGN
        raw = torch.empty(size, dtype=torch.uint8, pin_memory=pin)
        offset = (-raw.data_ptr()) % ALIGN
        self._raw = raw  # keeps the allocation alive
        self.buffer = raw[offset : offset + num_blocks * self.stride]
        self.base_ptr = self.buffer.data_ptr()
        self.pinned = pin
        # [block][stride bytes] -> typed view of the payload of every block.
        slots = self.buffer.view(num_blocks, self.stride)[:, : layout.block_bytes]
        self.blocks = slots.view(torch_dtype(layout.dtype)).view(num_blocks, *layout.block_shape())

    def block(self, i: int) -> Any:
        return self.blocks[i]

    def block_bytes(self, i: int) -> Any:
        """Slot ``i``'s payload as a uint8 tensor (for checks and fills)."""
        start = i * self.stride
        return self.buffer[start : start + self.layout.block_bytes]


class GpuKVCache:
    """The serving engine's KV cache: ``[layer][k/v][block][token][head][dim]`` on ``device``."""

    def __init__(self, layout: KVLayout, num_blocks: int, device: str = "cpu") -> None:
        import torch

        self.layout = layout
        self.num_blocks = num_blocks
        self.device = torch.device(device)
        self.kv = torch.zeros(layout.gpu_shape(num_blocks), dtype=torch_dtype(layout.dtype),
                              device=self.device)

    def block(self, i: int) -> Any:
        """Block ``i`` gathered into block-first order (a copy)."""
        return self.kv[:, :, i].contiguous()

    def block_as_bytes(self, i: int) -> Any:
        import torch

        return self.block(i).view(torch.uint8).reshape(-1)
