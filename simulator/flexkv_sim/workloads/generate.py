"""Turning a workload into a trace: arrival times, the interleaving of sessions, records.

Arrival times come first: ``requests`` times of the chosen process at ``rate`` requests
per second, so the trace has exactly that arrival process. At each arrival the session
that has been ready the longest (its think time since its last request has passed)
sends its next request; when none is ready a new session starts. A session therefore
waits at least its think time between requests, and the number of concurrent sessions
settles where their follow-ups fill the arrival stream.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from flexkv_engine.config import ConfigError
from flexkv_engine.trace import SCHEMA_VERSION, RequestRecord, TraceHeader, TraceWriter
from flexkv_engine.trace.fields import MAX_TOKENS_PER_BLOCK

from .keys import KEY_MODES
from .registry import Context, Turn, make_workload
from .sampling import arrival_times, check_arrivals

#: Header ``source`` of generated traces.
SOURCE = "generator"
#: Bumped whenever the same arguments start giving different bytes.
GENERATOR_VERSION = 1


def generate(
    workload: str,
    *,
    requests: int,
    seed: int,
    rate: float,
    arrival: str = "poisson",
    burstiness: float | None = None,
    tokens_per_block: int = 16,
    namespace: str | None = None,
    key_mode: str = "fast",
    **params: Any,
) -> tuple[TraceHeader, Iterator[RequestRecord]]:
    """A synthetic trace: its header and a lazy stream of ``requests`` GET records.

    ``workload`` names an entry of ``WORKLOADS``; ``params`` override its defaults.
    ``rate`` is requests per second overall; ``arrival`` is ``poisson`` or ``bursty``
    (gamma gaps whose coefficient of variation is ``burstiness``, default 2). Keys are
    chained at ``tokens_per_block`` in ``namespace``; ``key_mode`` ``fast`` hashes
    segment pieces, ``tokens`` real token ids (see ``keys.py``). Equal arguments give
    equal records (and byte-identical files). Bad arguments raise :class:`ConfigError`
    now, before any record is made.
    """
    spec = make_workload(workload, params)
    _check_args(requests, seed, rate, arrival, burstiness, tokens_per_block, namespace, key_mode)
    ctx = Context(workload, seed, tokens_per_block, namespace, key_mode)
    times = arrival_times(requests, ctx.rng("arrivals"), rate, arrival, burstiness)
    meta = {
        "generator": "flexkv_sim.workloads",
        "generator_version": GENERATOR_VERSION,
        "workload": workload,
        "seed": seed,
        "requests": requests,
        "rate": float(rate),
        "arrival": arrival,
        "burstiness": None if burstiness is None else float(burstiness),
        "namespace": namespace,
        "key_mode": key_mode,
        "params": asdict(spec),
    }
    header = TraceHeader(SCHEMA_VERSION, SOURCE, tokens_per_block, meta=meta)
    return header, _records(spec, ctx, times)


def _check_args(
    requests: int,
    seed: int,
    rate: float,
    arrival: str,
    burstiness: float | None,
    tokens_per_block: int,
    namespace: str | None,
    key_mode: str,
) -> None:
    def bad(name: str, reason: str) -> ConfigError:
        return ConfigError(reason, key_path=name)

    if type(requests) is not int or requests < 0:
        raise bad("requests", f"must be a non-negative integer, got {requests!r}")
    if type(seed) is not int:
        raise bad("seed", f"must be an integer, got {seed!r}")
    if type(tokens_per_block) is not int or not 1 <= tokens_per_block <= MAX_TOKENS_PER_BLOCK:
        raise bad(
            "tokens_per_block",
            f"must be an integer in [1, {MAX_TOKENS_PER_BLOCK}], got {tokens_per_block!r}",
        )
    if namespace is not None and type(namespace) is not str:
        raise bad("namespace", f"must be a string or None, got {namespace!r}")
    if key_mode not in KEY_MODES:
        raise bad("key_mode", f"must be one of {', '.join(KEY_MODES)}; got {key_mode!r}")
    try:
        check_arrivals(rate, arrival, burstiness)
    except ValueError as exc:
        raise bad("arrival", str(exc)) from None


def _records(spec: Any, ctx: Context, times: Iterable[float]) -> Iterator[RequestRecord]:
    sessions = spec.sessions(ctx)
    prefix = spec.id_prefix
    ns = ctx.namespace
    ready: list[tuple[float, int, int, int, Iterator[Turn]]] = []  # (ready at, tie, id, turn, it)
    ties = itertools.count()
    started = itertools.count()
    for t in times:
        while True:
            if ready and ready[0][0] <= t:
                _, _, sid, k, session = heapq.heappop(ready)
                turn = next(session, None)
                if turn is None:  # the session ended early (its context grew too long)
                    continue
            else:
                sid, k, session = next(started), 0, next(sessions)
                turn = next(session, None)
                if turn is None:
                    raise RuntimeError(f"{spec.name}: a new session made no request")
            break
        yield RequestRecord(
            t, "get", f"{prefix}{sid}-{k}", turn.num_tokens, turn.keys, ns, turn.output_tokens
        )
        if turn.think_s is not None:
            heapq.heappush(ready, (t + turn.think_s, next(ties), sid, k + 1, session))


def write_trace(
    dst: str | os.PathLike[str], header: TraceHeader, records: Iterable[RequestRecord]
) -> int:
    """Write a trace in our schema (gzip when ``dst`` ends in ``.gz``); return the records.

    The file appears only when complete (written beside ``dst``, then renamed).
    """
    dst = os.fspath(dst)
    partial = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.partial")
    written = 0
    try:
        with TraceWriter(partial, header, compress=dst.endswith(".gz")) as writer:
            for record in records:
                writer.write(record)
                written += 1
        os.replace(partial, dst)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return written
