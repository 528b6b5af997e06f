"""FlexKV's tracer format: JSON lines of events.

Each line is ``{"timestamp": ISO time, "event_type": ..., "component": ..., "data":
{...}}``. Event types: ``config`` (the model, cache and global config FlexKV ran with),
``request`` (``data.request_type`` GET, PUT, GET_MATCH, PUT_MATCH or PREFETCH_ASYNC,
with ``request_id``, ``token_ids`` and an optional ``token_mask``), ``wait`` and
``launch_tasks``.

GET and GET_MATCH become GET requests, PUT and PUT_MATCH standalone PUTs; their keys are
the chained hashes of ``token_ids`` (:func:`flexkv_engine.core.keys.block_keys`) at the
config's ``tokens_per_block``. Prefetches become ``x-prefetch`` extension records, and
every other event (a later config, waits, launches, unknown types) an ``x-flexkv-event``
record without its slot mappings, so nothing is dropped unseen. Times are seconds since
the first event.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from itertools import chain
from typing import Any

from ...core.keys import block_keys_batch
from ..errors import TraceError
from ..fields import block_size_or, parse_object
from ..records import GET, PUT, SCHEMA_VERSION, Record, RequestRecord, TraceHeader
from .flexkv_config import map_config, recorded_block_size

DEFAULT_BLOCK_SIZE = 16
SOURCE = "flexkv-tracer-import"
#: FlexKV request types and the op each becomes.
REQUEST_OPS = {"GET": GET, "GET_MATCH": GET, "PUT": PUT, "PUT_MATCH": PUT}
PREFETCH_TYPES = frozenset({"PREFETCH_ASYNC"})
PREFETCH_RECORD = "x-prefetch"
EVENT_RECORD = "x-flexkv-event"
_TOKEN_LIMIT = 2**63
_ONLY_INT = frozenset({int})
_MASK_TYPES = frozenset({bool, int})
#: Requests whose keys are hashed in one call (block_keys_batch hashes them side by side).
_KEY_BATCH = 64


class FlexKVTracerImporter:
    name = "flexkv-tracer"

    def detect(self, obj: object) -> bool:
        return (
            type(obj) is dict
            and type(obj.get("event_type")) is str
            and "timestamp" in obj
            and "data" in obj
        )

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[Record]]:
        # The config event normally comes first; look for it up to the first request.
        seen: list[tuple[int, str]] = []
        config: dict[str, Any] | None = None
        start = ""
        for lineno, text in lines:
            seen.append((lineno, text))
            try:
                event = _event(parse_object(text))
            except TraceError as exc:
                raise exc.at(path, lineno) from None
            start = start or event["timestamp"]
            if event["event_type"] == "config":
                config = {"line": lineno, "data": event["data"]}
                break
            if event["event_type"] == "request":
                break
        meta: dict[str, Any] = {
            "original_format": self.name,
            "original_file": os.path.basename(path),
        }
        if start:
            meta["start_time"] = start
        if config is None:
            tokens_per_block = block_size_or(block_size, DEFAULT_BLOCK_SIZE)
            sections: dict[str, Any] = {}
        else:
            try:
                tokens_per_block = recorded_block_size(config["data"])
                sections, unmapped = map_config(config["data"])
            except TraceError as exc:
                raise exc.at(path, config["line"]) from None
            if block_size is not None and block_size != tokens_per_block:
                raise TraceError(
                    f"the trace's config records {tokens_per_block}-token blocks but "
                    f"block_size={block_size} was given",
                    path,
                    config["line"],
                )
            meta.update(flexkv_config=config["data"], flexkv_config_unmapped=unmapped)
        header = TraceHeader(SCHEMA_VERSION, SOURCE, tokens_per_block, meta=meta, **sections)
        config_line = None if config is None else config["line"]
        return header, _records(chain(seen, lines), path, tokens_per_block, config_line)


def _event(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("event_type")
    if type(kind) is not str or not kind:
        raise TraceError(f"event_type must be a non-empty string, got {kind!r}")
    if type(obj.get("timestamp")) is not str:
        raise TraceError(f"timestamp must be an ISO time string, got {obj.get('timestamp')!r}")
    if type(obj.get("data")) is not dict:
        raise TraceError(f"data must be an object, got {obj.get('data')!r}")
    return obj


def _time(text: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(
            f"timestamp must be an ISO time such as 2025-06-01T12:00:00.123456, got {text!r}"
        ) from None


def _seconds(now: datetime.datetime, start: datetime.datetime, text: str, start_text: str) -> float:
    try:
        t = (now - start) / datetime.timedelta(seconds=1)
    except TypeError:
        raise TraceError(
            f"timestamp {text} and the first event's {start_text} mix time zones"
        ) from None
    if t < 0:
        raise TraceError(f"timestamp {text} is earlier than the first event's {start_text}")
    return t


def _records(
    lines: Iterator[tuple[int, str]], path: str, tokens_per_block: int, config_line: int | None
) -> Iterator[Record]:
    start: datetime.datetime | None = None
    start_text = ""
    # Requests wait here for their keys, up to _KEY_BATCH of them; records come out in
    # the order of the lines all the same (anything else, or an error, flushes first).
    pending: list[_Pending] = []
    for lineno, text in lines:
        try:
            event = _event(parse_object(text))
            stamp = event["timestamp"]
            now = _time(stamp)
            if start is None:
                start, start_text = now, stamp
            t = _seconds(now, start, stamp, start_text)
            kind, data = event["event_type"], event["data"]
            if kind == "request":
                pending.append(_request(data, t, lineno))
                if len(pending) >= _KEY_BATCH:
                    yield from _with_keys(pending, tokens_per_block)
                continue
            if kind == "config" and lineno == config_line:
                continue  # it is the header
            else:
                recorded = recorded_block_size(data) if kind == "config" else tokens_per_block
                if recorded != tokens_per_block:
                    raise TraceError(
                        f"this config event records tokens_per_block={recorded}, "
                        f"the trace is read at {tokens_per_block}"
                    )
                record: Record = {
                    "type": EVENT_RECORD,
                    "t": t,
                    "event_type": kind,
                    "component": event.get("component"),
                    "data": {k: v for k, v in data.items() if not k.startswith("slot_mapping")},
                }
        except TraceError as exc:
            yield from _with_keys(pending, tokens_per_block)
            raise exc.at(path, lineno) from None
        yield from _with_keys(pending, tokens_per_block)
        yield record
    yield from _with_keys(pending, tokens_per_block)


# A request read and checked, before its keys: (op name, t, id, tokens, namespace).
_Pending = tuple[str, float, Any, list[int], Any]


def _request(data: dict[str, Any], t: float, lineno: int) -> _Pending:
    kind = data.get("request_type")
    name = kind.upper() if type(kind) is str else ""
    if name not in REQUEST_OPS and name not in PREFETCH_TYPES:
        known = ", ".join([*REQUEST_OPS, *sorted(PREFETCH_TYPES)])
        raise TraceError(f"data.request_type must be one of {known}; got {kind!r}")
    tokens = _token_ids(data.get("token_ids"))
    _check_mask(data.get("token_mask"), len(tokens))
    rid = _request_id(data.get("request_id"), lineno)
    return name, t, rid, tokens, _namespace(data.get("namespace"))


def _with_keys(pending: list[_Pending], tokens_per_block: int) -> Iterator[Record]:
    """The records of ``pending`` (emptied), their keys hashed in one call."""
    if not pending:
        return
    batch = pending[:]
    pending.clear()
    keys = block_keys_batch([p[3] for p in batch], tokens_per_block, [p[4] for p in batch])
    for (name, t, rid, tokens, namespace), request_keys in zip(batch, keys, strict=True):
        if name in PREFETCH_TYPES:
            yield {
                "type": PREFETCH_RECORD,
                "t": t,
                "id": rid,
                "tokens": len(tokens),
                "keys": request_keys,
            }
        else:
            yield RequestRecord(t, REQUEST_OPS[name], rid, len(tokens), request_keys, namespace)


def _token_ids(value: Any) -> list[int]:
    if type(value) is list and (
        not value
        or (
            _ONLY_INT.issuperset(map(type, value)) and min(value) >= 0 and max(value) < _TOKEN_LIMIT
        )
    ):
        return value
    if type(value) is list:
        for i, token in enumerate(value):
            if type(token) is not int or not 0 <= token < _TOKEN_LIMIT:
                raise TraceError(
                    f"data.token_ids[{i}] must be a token id (an integer >= 0), got {token!r}"
                )
    raise TraceError(f"data.token_ids must be a flat list of token ids, got {type(value).__name__}")


def _check_mask(value: Any, num_tokens: int) -> None:
    """A token mask is validated, then not kept (see traces/FORMAT.md)."""
    if value is None:
        return
    if type(value) is not list or not _MASK_TYPES.issuperset(map(type, value)):
        raise TraceError("data.token_mask must be null or a list of booleans (or 0/1)")
    if not {0, 1}.issuperset(value):
        raise TraceError("data.token_mask may hold only true/false or 0/1")
    if len(value) != num_tokens:
        raise TraceError(f"data.token_mask has {len(value)} entries for {num_tokens} token_ids")


def _request_id(value: Any, lineno: int) -> str:
    if value is None:
        return str(lineno)
    if type(value) is int or (type(value) is str and value):
        return str(value)
    raise TraceError(f"data.request_id must be an integer or a non-empty string, got {value!r}")


def _namespace(value: Any) -> str | None:
    """FlexKV's namespace (a string or a list of strings, joined by '/'), if recorded."""
    if value is None or value in ("", []):
        return None
    if type(value) is str:
        return value
    if type(value) is list and all(type(part) is str for part in value):
        return "/".join(value)
    raise TraceError(f"data.namespace must be a string or a list of strings, got {value!r}")
