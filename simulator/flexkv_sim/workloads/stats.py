"""What a trace holds, and the hit rate an infinite cache would reach on it.

The infinite-cache hit rate is token-weighted like the replay's ``hit_rate``: requests
are taken in time order; a GET's hit tokens are ``min(h * tokens_per_block, tokens)``
where ``h`` is the number of its leading keys already seen, and then every key of the
request (GET or PUT) counts as seen. It bounds the hit rate of any finite cache with
the same block size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flexkv_engine.trace import RequestRecord, load_requests, read_trace


@dataclass(frozen=True)
class TraceStats:
    requests: int
    gets: int
    puts: int
    #: Prompt tokens of the GETs (the replay's denominator).
    prompt_tokens: int
    output_tokens: int
    unique_blocks: int
    mean_prompt_tokens: float
    max_prompt_tokens: int
    #: Seconds from the first request to the last.
    time_span_s: float
    tokens_per_block: int
    infinite_cache_hit_tokens: int
    infinite_cache_hit_rate: float


def trace_stats(requests: Iterable[RequestRecord], tokens_per_block: int) -> TraceStats:
    """Statistics of ``requests``, which must be in time order (``load_requests`` sorts)."""
    seen: set[int] = set()
    n = gets = prompt = output = longest = hit = 0
    first_t = last_t = 0.0
    for r in requests:
        if not n:
            first_t = r.t
        last_t = r.t
        n += 1
        output += r.output_tokens
        keys = r.keys
        if r.op == "get":
            gets += 1
            prompt += r.num_tokens
            longest = max(longest, r.num_tokens)
            h = 0
            for key in keys:
                if key not in seen:
                    break
                h += 1
            hit += min(h * tokens_per_block, r.num_tokens)
        seen.update(keys)
    return TraceStats(
        requests=n,
        gets=gets,
        puts=n - gets,
        prompt_tokens=prompt,
        output_tokens=output,
        unique_blocks=len(seen),
        mean_prompt_tokens=prompt / gets if gets else 0.0,
        max_prompt_tokens=longest,
        time_span_s=last_t - first_t,
        tokens_per_block=tokens_per_block,
        infinite_cache_hit_tokens=hit,
        infinite_cache_hit_rate=hit / prompt if prompt else 0.0,
    )


class _OutOfOrder(Exception):
    pass


def _in_time_order(requests: Iterable[RequestRecord]) -> Iterator[RequestRecord]:
    last = 0.0
    for r in requests:
        if r.t < last:
            raise _OutOfOrder
        last = r.t
        yield r


def trace_file_stats(
    path: str | os.PathLike[str], *, format: str | None = None, block_size: int | None = None
) -> TraceStats:
    """:func:`trace_stats` of a trace file of any registered format.

    A file already in time order (generated traces, most recordings) is streamed, so
    only the distinct keys are held in memory; otherwise its requests are loaded and
    sorted by time first.
    """
    trace = read_trace(path, format=format, block_size=block_size)
    tokens_per_block = trace.header.tokens_per_block
    try:
        return trace_stats(_in_time_order(trace.requests()), tokens_per_block)
    except _OutOfOrder:
        _, requests = load_requests(path, format=format, block_size=block_size)
        return trace_stats(requests, tokens_per_block)
