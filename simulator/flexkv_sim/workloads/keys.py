"""Prompt content as segments, and the chained block keys of a prompt built from them.

A synthetic prompt is a sequence of *segments* (a system prompt, one user turn, one
tool output, one document...). A segment is a deterministic token stream named by its
identity: the same segment always holds the same tokens, distinct segments hold
unrelated ones. A :class:`BlockChain` cuts the concatenated segments into blocks and
chains their keys exactly like :func:`flexkv_engine.core.keys.block_keys`: block ``i``'s
key is blake2b-128 of block ``i - 1``'s digest and block ``i``'s content, starting from
the namespace root. Two key modes describe a block's content:

* ``tokens``: the block's token ids, packed as ``block_keys`` packs them, so the keys are
  exactly what the engine computes for those tokens (the parity test checks this);
* ``fast`` (default): one 24-byte record per segment piece in the block (segment digest,
  start offset, end offset). A piece names its tokens uniquely, so equal descriptions
  mean equal content and the keys share prefixes exactly where the token keys would,
  without materialising any token.

Either way the last, partial block is hashed over the content it has, so its key differs
from the key of the full block at the same position (a partial block never falsely hits).
Appending costs one hash per block completed; the full blocks of a prefix are kept, so
extending a prompt (a session's next turn) re-hashes only its open last block.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable

from flexkv_engine.core.keys import namespace_root

KEY_MODES = ("fast", "tokens")

_PIECE = struct.Struct("<II")
_blake2b = hashlib.blake2b


class Segment:
    """``length`` tokens of content named by a 16-byte ``digest``."""

    __slots__ = ("_tokens", "digest", "ident", "length")

    def __init__(self, ident: str, length: int, digest: bytes) -> None:
        if length < 1:
            raise ValueError(f"segment {ident!r} must hold at least one token, got {length}")
        self.ident = ident
        self.length = length
        self.digest = digest
        self._tokens: tuple[int, ...] | None = None

    def tokens(self) -> tuple[int, ...]:
        """The segment's token ids (16-bit), drawn from a generator seeded by its digest."""
        if self._tokens is None:
            rng = random.Random(int.from_bytes(self.digest, "little"))
            data = rng.randbytes(2 * self.length)
            self._tokens = struct.unpack(f"<{self.length}H", data)
        return self._tokens

    def __repr__(self) -> str:
        return f"Segment({self.ident!r}, {self.length})"


def _encode_fast(seg: Segment, start: int, end: int) -> bytes:
    return seg.digest + _PIECE.pack(start, end)


def _encode_tokens(seg: Segment, start: int, end: int) -> bytes:
    # The same packing as core.keys.block_keys, so packed pieces concatenate to the
    # payload it hashes.
    return struct.pack(f"<{end - start}q", *seg.tokens()[start:end])


_ENCODERS: dict[str, Callable[[Segment, int, int], bytes]] = {
    "fast": _encode_fast,
    "tokens": _encode_tokens,
}


class BlockChain:
    """The chained keys of a prompt that grows by appending segments.

    ``keys`` holds the keys of the full blocks; the open last block is kept as its
    encoded pieces until it fills. :meth:`request_keys` gives the keys of the prompt as
    it stands (with the partial block's key, if any). Copy a chain before extending one
    that others share.
    """

    __slots__ = ("_encode", "_prev", "_tail", "_tail_len", "keys", "num_tokens", "tokens_per_block")

    def __init__(
        self, tokens_per_block: int, namespace: str | None = None, key_mode: str = "fast"
    ) -> None:
        if tokens_per_block < 1:
            raise ValueError(f"tokens_per_block must be >= 1, got {tokens_per_block}")
        try:
            self._encode = _ENCODERS[key_mode]
        except KeyError:
            raise ValueError(
                f"unknown key mode {key_mode!r}; choose from: {', '.join(KEY_MODES)}"
            ) from None
        self.tokens_per_block = tokens_per_block
        self.keys: list[int] = []
        self.num_tokens = 0
        self._prev = namespace_root(namespace).to_bytes(16, "little")
        self._tail: list[bytes] = []
        self._tail_len = 0

    def append(self, seg: Segment) -> None:
        """Append every token of ``seg``; hashes each block this completes."""
        tpb, encode, keys = self.tokens_per_block, self._encode, self.keys
        pos, end = 0, seg.length
        self.num_tokens += end
        if self._tail_len:
            pos = min(tpb - self._tail_len, end)
            self._tail.append(encode(seg, 0, pos))
            self._tail_len += pos
            if self._tail_len < tpb:
                return
            self._prev = _blake2b(self._prev + b"".join(self._tail), digest_size=16).digest()
            keys.append(int.from_bytes(self._prev, "little"))
            self._tail = []
            self._tail_len = 0
        prev = self._prev
        if encode is _encode_fast:  # the hot loop, with _encode_fast inlined
            digest, pack = seg.digest, _PIECE.pack
            while end - pos >= tpb:
                prev = _blake2b(prev + digest + pack(pos, pos + tpb), digest_size=16).digest()
                keys.append(int.from_bytes(prev, "little"))
                pos += tpb
        while end - pos >= tpb:
            prev = _blake2b(prev + encode(seg, pos, pos + tpb), digest_size=16).digest()
            keys.append(int.from_bytes(prev, "little"))
            pos += tpb
        self._prev = prev
        if pos < end:
            self._tail = [encode(seg, pos, end)]
            self._tail_len = end - pos

    def request_keys(self) -> list[int]:
        """A new list: the keys of the prompt so far, the partial last block included."""
        if not self._tail_len:
            return self.keys.copy()
        partial = _blake2b(self._prev + b"".join(self._tail), digest_size=16).digest()
        out = self.keys.copy()
        out.append(int.from_bytes(partial, "little"))
        return out

    def copy(self) -> BlockChain:
        """An independent chain in the same state (the key list is copied, not re-hashed)."""
        twin = BlockChain.__new__(BlockChain)
        twin._encode = self._encode
        twin.tokens_per_block = self.tokens_per_block
        twin.keys = self.keys.copy()
        twin.num_tokens = self.num_tokens
        twin._prev = self._prev
        twin._tail = self._tail.copy()
        twin._tail_len = self._tail_len
        return twin
