"""Transfer timelines as Chrome traces (the JSON trace event format).

:func:`write_chrome_trace` turns transfer records (the engine's tracer output, or the
twin's simulated ops) into a file that Perfetto (ui.perfetto.dev) and chrome://tracing
open: one process named after the tool, one track per transfer path, and one complete
event (``"ph": "X"``) per op, from the moment its bytes start moving for its transfer
time. ``args`` carry the request id, op id, bytes, blocks, queue time and dependencies.
Times are microseconds since the trace started.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from .core.paths import PATHS
from .trace import TransferRecord

PID = 1
US = 1e6


def _tids(paths: Iterable[str]) -> dict[str, int]:
    """Track ids: known paths in their canonical order, then any others by name."""
    used = set(paths)
    ordered = [p for p in PATHS if p in used] + sorted(used - set(PATHS))
    return {path: i + 1 for i, path in enumerate(ordered)}


def chrome_trace(transfers: Iterable[TransferRecord], *, process_name: str) -> dict[str, Any]:
    """The trace as a JSON-ready dict: metadata events first, then ops ordered by start."""
    records = list(transfers)
    tids = _tids(r.path for r in records)
    events: list[dict[str, Any]] = []
    for r in records:
        start = max(r.t_submit + r.queue_s, 0.0)
        events.append({
            "name": r.path,
            "cat": "transfer",
            "ph": "X",
            "ts": start * US,
            "dur": max(r.transfer_s, 0.0) * US,
            "pid": PID,
            "tid": tids[r.path],
            "args": {
                "request_id": r.request_id,
                "op_id": r.op_id,
                "bytes": r.num_bytes,
                "blocks": r.num_blocks,
                "queue_us": max(r.queue_s, 0.0) * US,
                "submit_us": max(r.t_submit, 0.0) * US,
                "deps": list(r.deps),
            },
        })
    events.sort(key=lambda e: (e["ts"], e["tid"], e["args"]["op_id"]))
    meta: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0,
         "args": {"name": process_name}},
    ]
    for path, tid in tids.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
                     "args": {"name": path}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                     "args": {"sort_index": tid}})
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}


def write_chrome_trace(
    transfers: Iterable[TransferRecord], path: str | PathLike[str], *, process_name: str
) -> Path:
    """Write ``transfers`` to ``path`` as a Chrome trace; returns the path."""
    out = Path(path)
    if out.parent != Path():
        out.parent.mkdir(parents=True, exist_ok=True)
    trace = chrome_trace(transfers, process_name=process_name)
    with out.open("w", encoding="utf-8") as f:
        json.dump(trace, f, separators=(",", ":"))
    return out


def read_transfers(trace_path: str | PathLike[str]) -> list[TransferRecord]:
    """The transfer records of a trace file written by the engine's tracer."""
    from .trace import read_trace

    return [r for r in read_trace(trace_path) if type(r) is TransferRecord]


__all__ = ["chrome_trace", "read_transfers", "write_chrome_trace"]
