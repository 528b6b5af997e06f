"""KV layouts: the shape and size of one block in each place it lives (torch-free).

- GPU (the serving engine's KV cache): layer-first, as vLLM keeps it,
  ``[layer][k/v][block][token][head][dim]``. One block is scattered over
  ``2 * num_layers`` chunks of ``tokens_per_block * heads * dim`` elements.
- Host pool, SSD and remote: block-first, ``[block][layer][k/v][token][head][dim]``: one
  block is one contiguous run of ``block_bytes``, stored at a ``stride`` rounded up to
  4 KiB so that O_DIRECT I/O on it is aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig

ALIGN = 4096


@dataclass(frozen=True)
class KVLayout:
    num_layers: int
    num_kv_heads: int
    head_size: int
    tokens_per_block: int
    dtype: str  # torch-style name: bfloat16, float16, float32, float8_e4m3fn
    dtype_size: int
    kv: int = 2  # 1 for MLA (one latent per token), else K and V

    @classmethod
    def from_model(cls, model: ModelConfig, tokens_per_block: int) -> KVLayout:
        return cls(
            num_layers=model.num_layers,
            num_kv_heads=model.num_kv_heads,
            head_size=model.head_size,
            tokens_per_block=tokens_per_block,
            dtype=model.dtype,
            dtype_size=model.dtype_size,
            kv=1 if model.use_mla else 2,
        )

    @property
    def chunk_elems(self) -> int:
        """Elements of one (layer, k/v) chunk of one block."""
        return self.tokens_per_block * self.num_kv_heads * self.head_size

    @property
    def chunk_bytes(self) -> int:
        return self.chunk_elems * self.dtype_size

    @property
    def block_bytes(self) -> int:
        return self.num_layers * self.kv * self.chunk_bytes

    @property
    def stride(self) -> int:
        """Bytes between consecutive blocks in block-first storage (4 KiB aligned)."""
        return -(-self.block_bytes // ALIGN) * ALIGN

    def gpu_shape(self, num_blocks: int) -> tuple[int, ...]:
        return (self.num_layers, self.kv, num_blocks, self.tokens_per_block,
                self.num_kv_heads, self.head_size)

    def block_shape(self) -> tuple[int, ...]:
        """One block in block-first order (without the 4 KiB padding)."""
        return (self.num_layers, self.kv, self.tokens_per_block, self.num_kv_heads,
                self.head_size)
