"""The engine's tracer (``enable_trace``, ``trace_file_path``): our trace format, v1.

It records every request (op, id, tokens, keys), its outcome per tier (hit blocks,
match time, latency), every transfer op (path, bytes, blocks, submit time, queue
and transfer time) and every call into the planner in the order it was made (``event``
records: under load the order of events is not the trace's order), so that
``flexkv-sim`` can replay the file unchanged, check the twin against the engine's own
order of events, and fit device curves from it. Times are seconds since the tracer started.
Thread-safe; records are written as they happen.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from .config import Config, config_to_dict
from .trace import OutcomeRecord, RequestRecord, TraceHeader, TraceWriter, TransferRecord

SOURCE = "flexkv-run"


class Tracer:
    def __init__(self, path: str, config: Config, *, meta: dict[str, Any] | None = None) -> None:
        cfg = config_to_dict(config)
        header = TraceHeader(
            version=1, source=SOURCE,
            tokens_per_block=int(config.cache_config.tokens_per_block or 16),
            model_config=cfg["model_config"], cache_config=cfg["cache_config"],
            meta=dict(meta or {}),
        )
        self.path = path
        self._writer = TraceWriter(path, header)
        self._writer.__enter__()
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._seq = itertools.count()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def elapsed(self, perf_time: float) -> float:
        """A ``time.perf_counter()`` reading as seconds since the trace started."""
        return perf_time - self._t0

    def write(self, record: Any) -> None:
        with self._lock:
            self._writer.write(record)

    def request(self, record: RequestRecord) -> None:
        self.write(record)

    def outcome(
        self, trace_id: str, kind: str, result: Any, tokens_per_block: int, num_tokens: int
    ) -> None:
        del tokens_per_block, num_tokens  # hit blocks are recorded, tokens follow from them
        self.write(OutcomeRecord(
            request_id=trace_id, op="put" if kind == "put" else "get", t=self.now(),
            hit_blocks=dict(result.hit_blocks), match_s=result.match_s,
            latency_s=result.latency_s, ttft_s=None, ok=result.status == "done",
        ))

    def event(self, kind: str, trace_id: str, **fields: Any) -> None:
        """A planner call (``kind``: get, put, prefetch or done), numbered in call order.

        The caller holds the lock it plans under, so the numbers follow the planner's
        own order of calls."""
        with self._lock:
            self._writer.write({"type": "event", "seq": next(self._seq), "kind": kind,
                                "id": trace_id, "t": self.now(), **fields})

    def transfer(
        self, trace_id: str, op: Any, done: Any, submitted: float, ios: int = 0
    ) -> None:
        """One finished op; ``ios``: an SSD op's I/O count (0: not counted)."""
        self.write(TransferRecord(
            request_id=trace_id, op_id=op.op_id, path=op.path, num_bytes=done.num_bytes,
            num_blocks=op.blocks, t_submit=self.elapsed(submitted), queue_s=done.queue_s,
            transfer_s=done.transfer_s, deps=tuple(op.deps), ios=ios,
        ))

    def close(self) -> None:
        with self._lock:
            self._writer.__exit__(None, None, None)
