"""Chained block keys.

A sequence of tokens is cut into blocks of ``tokens_per_block`` tokens; the key of block
``i`` is a hash of the key of block ``i - 1`` and the tokens of block ``i`` (the first
block's predecessor is a hash of the namespace). A key therefore identifies the whole
prefix up to the end of its block: two sequences that share key ``i`` share blocks
``0..i``. The index relies on this ("chained keys") to compare runs of blocks by their
last key and to find divergence points by bisection.

Keys are 128-bit ints (blake2b-128), so collisions are negligible at any cache size.
The last block may be partial; it gets a key like any other (traces count it as a block).

:func:`block_keys` runs natively (``flexkv_engine._native.block_keys``, csrc/keys) when
the native module is built, and here otherwise; both give the same keys (a parity test
checks them). Where the native path refuses its input (a token out of the int64 range,
a value that is not an integer) this module's own path runs, so errors are the same too.
:func:`block_keys_batch` gives the keys of many sequences in one call: the native path
hashes them side by side, one sequence per SIMD lane, which is where most of its speed
comes from (one sequence alone is a serial chain of hashes). The native module is looked
up at the first call, not at import: importing the core loads nothing compiled.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import cast

KEY_BITS = 128
_ROOT_PERSON = b"flexkv-twin-root"


def namespace_root(namespace: str | bytes | None = None) -> int:
    """The predecessor key of a sequence's first block in ``namespace`` (tenant, LoRA, salt)."""
    ns = namespace.encode() if isinstance(namespace, str) else (namespace or b"")
    digest = hashlib.blake2b(ns, digest_size=16, person=_ROOT_PERSON).digest()
    return int.from_bytes(digest, "little")


NativeBlockKeys = Callable[[object, int, bytes], list[int]]
NativeBlockKeysMany = Callable[..., list[list[int]]]  # (seqs, tpb, ns, *, threads=None)
_native_keys: list[NativeBlockKeys | None] = []  # filled at the first call
_native_keys_many: list[NativeBlockKeysMany | None] = []  # likewise


def _native_function(name: str) -> Callable[..., object] | None:
    try:
        from .. import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_native, name, None)


def native_block_keys() -> NativeBlockKeys | None:
    """``_native.block_keys`` when the native module is built with it, else None."""
    if not _native_keys:
        _native_keys.append(_native_function("block_keys"))  # type: ignore[arg-type]
    return _native_keys[0]


def native_block_keys_many() -> NativeBlockKeysMany | None:
    """``_native.block_keys_many`` when the native module is built with it, else None."""
    if not _native_keys_many:
        _native_keys_many.append(_native_function("block_keys_many"))  # type: ignore[arg-type]
    return _native_keys_many[0]


def _ns_bytes(namespace: str | bytes | None) -> bytes:
    return namespace.encode() if isinstance(namespace, str) else (namespace or b"")


def block_keys(
    tokens: Sequence[int], tokens_per_block: int, namespace: str | bytes | None = None
) -> list[int]:
    """Chained keys of ``tokens`` cut into blocks (the last block may be partial).

    ``tokens``: a sequence of ints; a numpy integer array is read in place by the native
    path, without an int object per token.
    """
    if tokens_per_block < 1:
        raise ValueError(f"tokens_per_block must be >= 1, got {tokens_per_block}")
    native = native_block_keys()
    if native is not None:
        try:
            return native(tokens, tokens_per_block, _ns_bytes(namespace))
        except (OverflowError, TypeError, ValueError):
            pass  # python_block_keys raises the error of record
    return python_block_keys(tokens, tokens_per_block, namespace)


Namespace = str | bytes | None


def block_keys_batch(
    seqs: Sequence[Sequence[int]],
    tokens_per_block: int,
    namespace: Namespace | Sequence[Namespace] = None,
    *,
    threads: int | None = None,
) -> list[list[int]]:
    """``[block_keys(s, tokens_per_block, namespace) for s in seqs]``, in one call.

    ``namespace``: one for every sequence, or a list or tuple holding one per sequence.
    Sequences may be of any kind :func:`block_keys` takes, mixed. The native path hashes
    the sequences side by side; where it refuses the batch, each sequence takes
    :func:`block_keys`, so values and errors are the same as one call per sequence.
    ``threads``: how many threads the native path may share a batch among; None spreads
    a large batch over the cores, 1 keeps it on the calling thread (same keys).
    """
    if tokens_per_block < 1:
        raise ValueError(f"tokens_per_block must be >= 1, got {tokens_per_block}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be None or >= 1, got {threads}")
    if not isinstance(seqs, (list, tuple)):
        seqs = list(seqs)
    if isinstance(namespace, (list, tuple)):
        if len(namespace) != len(seqs):
            raise ValueError(
                f"{len(namespace)} namespaces for {len(seqs)} sequences; give one per sequence"
            )
        spaces: list[Namespace] = list(namespace)
        single: Namespace = None
    else:
        single = cast(Namespace, namespace)  # not a list or tuple: one for all
        spaces = [single] * len(seqs)
    native = native_block_keys_many()
    if native is not None and seqs:
        ns: object = (
            [_ns_bytes(n) for n in spaces]
            if isinstance(namespace, (list, tuple))
            else _ns_bytes(single)
        )
        try:
            return native(seqs, tokens_per_block, ns, threads=threads)
        except (OverflowError, TypeError, ValueError):
            pass  # block_keys takes each sequence and raises the error of record
    return [block_keys(s, tokens_per_block, n) for s, n in zip(seqs, spaces, strict=True)]


def python_block_keys_batch(
    seqs: Sequence[Sequence[int]],
    tokens_per_block: int,
    namespace: Namespace | Sequence[Namespace] = None,
) -> list[list[int]]:
    """:func:`block_keys_batch` computed here, whether or not the native module is built."""
    if isinstance(namespace, (list, tuple)):
        if len(namespace) != len(seqs):
            raise ValueError(
                f"{len(namespace)} namespaces for {len(seqs)} sequences; give one per sequence"
            )
        return [
            python_block_keys(s, tokens_per_block, n) for s, n in zip(seqs, namespace, strict=True)
        ]
    single = cast(Namespace, namespace)  # not a list or tuple: one for all
    return [python_block_keys(s, tokens_per_block, single) for s in seqs]


def python_block_keys(
    tokens: Sequence[int], tokens_per_block: int, namespace: str | bytes | None = None
) -> list[int]:
    """:func:`block_keys` computed here, whether or not the native module is built."""
    if tokens_per_block < 1:
        raise ValueError(f"tokens_per_block must be >= 1, got {tokens_per_block}")
    keys: list[int] = []
    prev = namespace_root(namespace).to_bytes(16, "little")
    for start in range(0, len(tokens), tokens_per_block):
        chunk = tokens[start : start + tokens_per_block]
        payload = prev + struct.pack(f"<{len(chunk)}q", *chunk)
        prev = hashlib.blake2b(payload, digest_size=16).digest()
        keys.append(int.from_bytes(prev, "little"))
    return keys


def num_blocks(num_tokens: int, tokens_per_block: int) -> int:
    """Blocks of a sequence of ``num_tokens`` tokens, the last one possibly partial."""
    return -(-num_tokens // tokens_per_block)


def tokens_in(start: int, end: int, tokens_per_block: int, num_tokens: int) -> int:
    """Tokens covered by blocks ``[start, end)`` of a sequence of ``num_tokens`` tokens."""
    return min(end * tokens_per_block, num_tokens) - min(start * tokens_per_block, num_tokens)


def reblock(keys: Sequence[int], factor: int) -> list[int]:
    """Keys of the same sequence at ``factor`` times the block size.

    The key of a coarse block is the key of its last fine block (keys are chained); a
    partial last coarse block takes the key of the last fine block it holds.
    """
    if factor < 1:
        raise ValueError(f"re-blocking factor must be >= 1, got {factor}")
    if factor == 1:
        return list(keys)
    coarse = list(keys[factor - 1 :: factor])
    if len(keys) % factor:
        coarse.append(keys[-1])
    return coarse


def reblock_factor(recorded: int, wanted: int) -> int:
    """How many recorded blocks make one wanted block; refuses finer or non-multiple sizes."""
    if wanted < recorded:
        raise ValueError(
            f"tokens_per_block={wanted} is finer than the trace's recorded block size "
            f"{recorded}; a trace re-blocks only to multiples of its block size"
        )
    if wanted % recorded:
        raise ValueError(
            f"tokens_per_block={wanted} is not a multiple of the trace's block size {recorded}"
        )
    return wanted // recorded


# Sub-block keys of an expanded coarse key live in [2**126, 2**127), far from imported ids
# (Mooncake ids are small ints); they stay below 2**128 like every key in a trace.
_SUB_BASE = 1 << 126


def expand_keys(keys: Sequence[int], factor: int, num_tokens: int, fine_block: int) -> list[int]:
    """Split each coarse key into ``factor`` chained sub-block keys (for finer-grained study).

    The last sub-key of each coarse block is the coarse key itself, so ``reblock`` undoes
    the expansion; the others are derived deterministically from it. The result is cut to
    ``ceil(num_tokens / fine_block)`` keys.
    """
    wanted = num_blocks(num_tokens, fine_block)
    out: list[int] = []
    last = factor - 1
    for key in keys:
        base = _SUB_BASE + key * factor
        out.extend(range(base, base + last))
        out.append(key)
        if len(out) >= wanted:
            break
    del out[wanted:]
    return out
