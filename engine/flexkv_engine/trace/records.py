"""Typed records of a trace, shared by the engine's tracer, the replayers and the twin.

Every record is a frozen, slotted dataclass. ``RequestRecord.keys`` is a plain list
because the replayers walk millions of keys and a list is the cheapest container to
build and index; it belongs to the record, and callers must not mutate it. Records that
hold a list or dict are therefore not hashable.

Pacing records (how a hardware run was paced) and extension records (``type`` starting
with ``x-``) are passed around as plain dicts; see ``traces/FORMAT.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Major version of the JSON-lines schema this package reads and writes.
SCHEMA_VERSION = 1
#: Value of the header's ``format`` field that marks our own schema.
FORMAT_NAME = "flexkv-twin-trace"

GET = "get"
PUT = "put"
OPS = (GET, PUT)


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """First line of a trace: schema version, origin and the block size of its keys."""

    version: int
    source: str
    tokens_per_block: int
    model_config: dict[str, Any] | None = None
    cache_config: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request to replay at time ``t`` (seconds since the start of the trace).

    ``op`` is ``"get"`` for a serving request (GET, then prefill, decode and the
    write-through PUT of the same keys) or ``"put"`` for a standalone PUT. ``keys`` are
    chained block keys: ``keys[i]`` names the whole prefix up to the end of block ``i``,
    and ``len(keys) == ceil(num_tokens / tokens_per_block)``. Do not mutate ``keys``.
    """

    t: float
    op: str
    request_id: str
    num_tokens: int
    keys: list[int]
    namespace: str | None = None
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """What a GET or PUT found: blocks per tier, match time and latency (seconds)."""

    request_id: str
    op: str
    t: float
    hit_blocks: dict[str, int]
    match_s: float
    latency_s: float
    ttft_s: float | None = None
    ok: bool = True


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One transfer op of a request's plan: path, size and its queue and run times."""

    request_id: str
    op_id: int
    path: str
    num_bytes: int
    num_blocks: int
    t_submit: float
    queue_s: float
    transfer_s: float
    deps: tuple[int, ...] = ()
    ios: int = 0  # SSD ops: the I/Os their blocks merged into; 0 where not counted


#: Anything a reader yields: the three typed records, or a pacing/extension dict.
Record = RequestRecord | OutcomeRecord | TransferRecord | dict[str, Any]
