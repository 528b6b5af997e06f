"""Coarsening a trace's block keys to a multiple of the recorded block size.

Keys are chained, so the key of a block of ``k * n`` tokens is the key of the last of
the ``k`` recorded blocks it covers, and a final partial block keeps the last recorded
key. No tokens are needed. A size that is not a multiple (or is finer) is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from .records import RequestRecord


def reblock(
    requests: Iterable[RequestRecord], tokens_per_block: int, new_tokens_per_block: int
) -> list[RequestRecord]:
    """The requests with keys for ``new_tokens_per_block``-token blocks."""
    if (
        tokens_per_block < 1
        or new_tokens_per_block < tokens_per_block
        or new_tokens_per_block % tokens_per_block
    ):
        raise ValueError(
            f"cannot re-block {tokens_per_block}-token keys to {new_tokens_per_block} tokens: "
            f"the new size must be a multiple of the recorded one"
        )
    factor = new_tokens_per_block // tokens_per_block
    if factor == 1:
        return list(requests)
    out = []
    for r in requests:
        keys = r.keys[factor - 1 :: factor]
        if len(r.keys) % factor:
            keys.append(r.keys[-1])
        out.append(
            RequestRecord(r.t, r.op, r.request_id, r.num_tokens, keys, r.namespace, r.output_tokens)
        )
    return out
