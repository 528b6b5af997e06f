"""Our JSON-lines schema (version 1): one decoder and one encoder per record type.

Decoders take a parsed line and return a record, raising :class:`TraceError` without a
location; unknown fields are ignored. Encoders return a dict whose key order is the
order in which it is written, so the same records always give the same bytes.
``traces/FORMAT.md`` is the prose version of this module; keep them in step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..core.paths import PATHS, TIERS
from . import fields as f
from .errors import TraceError
from .records import (
    FORMAT_NAME,
    OPS,
    SCHEMA_VERSION,
    OutcomeRecord,
    Record,
    RequestRecord,
    TraceHeader,
    TransferRecord,
)

HEADER = "header"
REQUEST = "request"
OUTCOME = "outcome"
TRANSFER = "transfer"
PACING = "pacing"
EVENT = "event"
#: Record types of schema v1 other than the header.
RECORD_TYPES = (REQUEST, OUTCOME, TRANSFER, PACING, EVENT)
#: Record types starting with this prefix are extensions: passed through as dicts.
EXTENSION_PREFIX = "x-"

PACING_SPEED_MAX = "max"
PACING_PREFILL = ("none", "model")
#: ``kind`` of an event record: a GET, PUT or prefetch planned, or one of its ops ended.
EVENT_PLANS = ("get", "put", "prefetch")
EVENT_KINDS = (*EVENT_PLANS, "done")

_TIER_SET = frozenset(TIERS)


# ---------------------------------------------------------------------------- decoding


def decode_header(obj: dict[str, Any]) -> TraceHeader:
    kind = obj.get("type")
    if kind != HEADER:
        raise TraceError(f"the first line must be the header record, found type {kind!r}")
    if obj.get("format") != FORMAT_NAME:
        raise TraceError(f"header format must be {FORMAT_NAME!r}, got {obj.get('format')!r}")
    version = f.required(obj, "version")
    if type(version) is not int:
        raise TraceError(f"header version must be an integer, got {version!r}")
    if version != SCHEMA_VERSION:
        raise TraceError(
            f"unsupported trace schema version {version}; this reader understands "
            f"version {SCHEMA_VERSION} only"
        )
    source = f.required(obj, "source")
    if type(source) is not str or not source:
        raise TraceError(f"header source must be a non-empty string, got {source!r}")
    tokens_per_block = f.required(obj, "tokens_per_block")
    if tokens_per_block == 0 and type(tokens_per_block) is int:
        raise TraceError("tokens_per_block must be at least 1")
    if type(tokens_per_block) is not int or not 0 < tokens_per_block <= f.MAX_TOKENS_PER_BLOCK:
        raise TraceError(
            f"tokens_per_block must be an integer in [1, {f.MAX_TOKENS_PER_BLOCK}], "
            f"got {tokens_per_block!r}"
        )
    meta = f.optional_dict(obj, "meta", {})
    return TraceHeader(
        version=version,
        source=source,
        tokens_per_block=tokens_per_block,
        model_config=f.optional_dict(obj, "model_config"),
        cache_config=f.optional_dict(obj, "cache_config"),
        meta={} if meta is None else meta,
    )


def decode_request(obj: dict[str, Any], tokens_per_block: int) -> RequestRecord:
    t = f.seconds(obj, "t")
    op = f.choice(obj, "op", OPS)
    rid = f.request_id(obj)
    num_tokens = f.count(obj, "tokens")
    keys = f.keys(f.required(obj, "keys"), "keys")
    f.check_key_count(keys, num_tokens, tokens_per_block, "keys", "tokens")
    return RequestRecord(
        t,
        op,
        rid,
        num_tokens,
        keys,
        f.optional_str(obj, "ns"),
        f.count(obj, "output_tokens", default=0),
    )


def decode_outcome(obj: dict[str, Any], tokens_per_block: int) -> OutcomeRecord:
    rid = f.request_id(obj)
    op = f.choice(obj, "op", OPS)
    t = f.seconds(obj, "t")
    raw = f.required(obj, "hit_blocks")
    if type(raw) is not dict or not _TIER_SET.issuperset(raw):
        raise TraceError(f"hit_blocks must be an object with keys among {', '.join(TIERS)}")
    hit_blocks = {tier: f.count(raw, tier, default=0) for tier in TIERS}
    ok = obj.get("ok", True)
    if type(ok) is not bool:
        raise TraceError(f"ok must be true or false, got {ok!r}")
    return OutcomeRecord(
        rid,
        op,
        t,
        hit_blocks,
        f.seconds(obj, "match_s"),
        f.seconds(obj, "latency_s"),
        f.optional_seconds(obj, "ttft_s"),
        ok,
    )


def decode_transfer(obj: dict[str, Any], tokens_per_block: int) -> TransferRecord:
    deps = obj.get("deps", [])
    if type(deps) is not list or not all(type(d) is int and d >= 0 for d in deps):
        raise TraceError("deps must be a list of non-negative integer op ids")
    return TransferRecord(
        f.request_id(obj),
        f.count(obj, "op_id", 2**63 - 1),
        f.choice(obj, "path", PATHS),
        f.count(obj, "bytes", f.MAX_BYTES),
        f.count(obj, "blocks"),
        f.seconds(obj, "t_submit"),
        f.seconds(obj, "queue_s"),
        f.seconds(obj, "transfer_s"),
        tuple(deps),
        f.count(obj, "ios") if "ios" in obj else 0,
    )


def decode_pacing(obj: dict[str, Any], tokens_per_block: int) -> dict[str, Any]:
    speed = f.required(obj, "speed")
    if speed != PACING_SPEED_MAX:
        if type(speed) not in (int, float) or not 0.0 < speed < math.inf:  # NaN fails too
            raise TraceError(
                f"pacing speed must be a positive number or {PACING_SPEED_MAX!r}, got {speed!r}"
            )
        speed = float(speed)
    return {"type": PACING, "speed": speed, "prefill": f.choice(obj, "prefill", PACING_PREFILL)}


def decode_event(obj: dict[str, Any], tokens_per_block: int) -> dict[str, Any]:
    """A call into the planner, in the order the engine made it (see FORMAT.md)."""
    kind = f.choice(obj, "kind", EVENT_KINDS)
    out: dict[str, Any] = {
        "type": EVENT, "seq": f.count(obj, "seq", 2**63 - 1), "kind": kind,
        "id": f.request_id(obj), "t": f.seconds(obj, "t"),
    }
    if kind == "done":
        out["graph"] = f.choice(obj, "graph", EVENT_PLANS)
        out["op_id"] = f.count(obj, "op_id", 2**63 - 1)
        ok = obj.get("ok", True)
        if type(ok) is not bool:
            raise TraceError(f"ok must be true or false, got {ok!r}")
        out["ok"] = ok
        out["first_bad"] = f.count(obj, "first_bad") if "first_bad" in obj else 0
    else:
        out["now"] = f.seconds(obj, "now") if "now" in obj else out["t"]
        out["gpu_blocks"] = f.count(obj, "gpu_blocks") if "gpu_blocks" in obj else 0
        out["remote_known"] = f.count(obj, "remote_known") if "remote_known" in obj else 0
    return out


_DECODERS: dict[str, Callable[[dict[str, Any], int], Record]] = {
    REQUEST: decode_request,
    OUTCOME: decode_outcome,
    TRANSFER: decode_transfer,
    PACING: decode_pacing,
    EVENT: decode_event,
}


def decode_record(obj: dict[str, Any], tokens_per_block: int) -> Record:
    """Decode any record after the header."""
    kind = obj.get("type")
    decoder = _DECODERS.get(kind) if type(kind) is str else None
    if decoder is not None:
        return decoder(obj, tokens_per_block)
    if kind == HEADER:
        raise TraceError("a header may appear only once, as the first line")
    if type(kind) is str and kind.startswith(EXTENSION_PREFIX):
        return obj
    raise TraceError(
        f"unknown record type {kind!r}; expected one of {', '.join(RECORD_TYPES)} "
        f"(or an extension type starting with {EXTENSION_PREFIX!r})"
    )


# ---------------------------------------------------------------------------- encoding


def encode_header(h: TraceHeader) -> dict[str, Any]:
    return {
        "type": HEADER,
        "format": FORMAT_NAME,
        "version": h.version,
        "source": h.source,
        "tokens_per_block": h.tokens_per_block,
        "model_config": h.model_config,
        "cache_config": h.cache_config,
        "meta": h.meta,
    }


def _encode_request(r: RequestRecord) -> dict[str, Any]:
    return {
        "type": REQUEST,
        "t": float(r.t),
        "op": r.op,
        "id": r.request_id,
        "tokens": r.num_tokens,
        "keys": r.keys,
        "ns": r.namespace,
        "output_tokens": r.output_tokens,
    }


def _encode_outcome(r: OutcomeRecord) -> dict[str, Any]:
    hit_blocks = dict.fromkeys(TIERS, 0)
    hit_blocks.update(r.hit_blocks)  # tiers in fixed order; unknown names stay, to be refused
    return {
        "type": OUTCOME,
        "id": r.request_id,
        "op": r.op,
        "t": float(r.t),
        "hit_blocks": hit_blocks,
        "match_s": float(r.match_s),
        "latency_s": float(r.latency_s),
        "ttft_s": None if r.ttft_s is None else float(r.ttft_s),
        "ok": r.ok,
    }


def _encode_transfer(r: TransferRecord) -> dict[str, Any]:
    return {
        "type": TRANSFER,
        "id": r.request_id,
        "op_id": r.op_id,
        "path": r.path,
        "bytes": r.num_bytes,
        "blocks": r.num_blocks,
        "t_submit": float(r.t_submit),
        "queue_s": float(r.queue_s),
        "transfer_s": float(r.transfer_s),
        "deps": list(r.deps),
        "ios": r.ios,
    }


def _encode_dict(r: dict[str, Any]) -> dict[str, Any]:
    if r.get("type") == PACING:
        speed = r.get("speed")
        if type(speed) is int:
            speed = float(speed)
        return {"type": PACING, "speed": speed, "prefill": r.get("prefill")}
    if r.get("type") == EVENT:
        return decode_event(r, 1)  # the fields in their order, checked
    return r  # an extension record: written as given (the decoder checks its type)


_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    RequestRecord: _encode_request,
    OutcomeRecord: _encode_outcome,
    TransferRecord: _encode_transfer,
    dict: _encode_dict,
}


def encode_record(record: Record) -> dict[str, Any]:
    """The dict to write for any record after the header."""
    encoder = _ENCODERS.get(type(record))
    if encoder is None:
        raise TypeError(f"cannot write a {type(record).__name__} to a trace")
    return encoder(record)
