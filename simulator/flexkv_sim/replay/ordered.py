"""Replaying an order of events: the planner driven by a recorded sequence of calls.

Under load the engine's order of events is not the trace's: GETs and PUTs of concurrent
requests interleave, and their ops end in whatever order the devices finish them. The
engine's tracer numbers every call into the planner (``event`` records: a GET, PUT or
prefetch planned, with the time and GPU blocks it was planned with; an op ended, with
its outcome), and the twin's timing replay logs its own calls the same way.

:func:`replay_events` drives a fresh planner through such a sequence. The core is
deterministic for a given sequence of calls, so replaying the engine's events must give
the engine's hits block for block: that checks the model op by op, with timing taken
out. :func:`explain` then says, for a request whose hits differ between two orders
(the engine's and the twin's), why they differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flexkv_engine.core.graph import TransferGraph
from flexkv_engine.core.paths import (
    D2H,
    REMOTE_READ,
    REMOTE_WRITE,
    SSD_READ,
    SSD_WRITE,
)
from flexkv_engine.planning import build_planner
from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.request_life import tier_tokens

#: Paths whose completion makes a PUT's blocks ready in a tier: CPU, SSD, remote.
WRITE_PATHS = (D2H, SSD_WRITE, REMOTE_WRITE)
#: Reasons :func:`explain` gives, in the order it tries them.
REASONS = {
    "in_flight": "its GET found blocks still being written on one side only",
    "put_order": "a PUT of blocks it shares landed before its GET on one side, after on "
    "the other",
    "eviction_order": "its blocks were evicted on one side only: other requests touched "
    "the tier in another order",
}


@dataclass
class OrderedResult:
    """Hits per GET, and where each GET and each PUT's writes fell in the order."""

    hits: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # cpu, ssd, remote
    in_flight: dict[str, bool] = field(default_factory=dict)
    get_seq: dict[str, int] = field(default_factory=dict)
    put_done: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> path -> seq
    events: int = 0


def replay_events(inp: ReplayInput, events: Iterable[dict[str, Any]]) -> OrderedResult:
    """Drive the planner of ``inp``'s config with ``events`` in ``seq`` order."""
    planner = build_planner(inp.config.cache_config)
    requests = {r.request_id: r for r in inp.requests}
    tpb = planner.tokens_per_block
    graphs: dict[tuple[str, str], TransferGraph] = {}
    out = OrderedResult()
    for event in sorted(events, key=lambda e: e["seq"]):
        kind, rid = event["kind"], event["id"]
        out.events += 1
        if kind == "done":
            graph = graphs[(rid, event["graph"])]
            op = next(o for o in graph.ops if o.op_id == event["op_id"])
            ok = event["ok"]
            if not ok and op.path in (SSD_READ, REMOTE_READ) and (
                op.path == SSD_READ or event["first_bad"] < op.end - op.start
            ):
                planner.invalidate_source(op, op.start + event["first_bad"])
            planner.complete(graph, op, ok=ok)
            if graph.kind == "put" and op.path in WRITE_PATHS:
                out.put_done.setdefault(rid, {})[op.path] = event["seq"]
        else:
            req = requests[rid]
            if kind == "put":
                graph = planner.plan_put(rid, req.keys, req.num_tokens, event["now"])
            else:
                graph = planner.plan_get(
                    rid, req.keys, req.num_tokens, event["now"],
                    gpu_blocks=event["gpu_blocks"], to_gpu=kind == "get",
                    remote_known=event["remote_known"],
                )
                if kind == "get":
                    out.get_seq[rid] = event["seq"]
                    out.in_flight[rid] = graph.in_flight
            graphs[(rid, kind)] = graph
    for (rid, kind), graph in graphs.items():
        if kind != "get":
            continue
        _, cpu, ssd, remote = tier_tokens(0, graph.served, tpb, requests[rid].num_tokens)
        out.hits[rid] = (cpu, ssd, remote)
    return out


def explain(
    rid: str, measured: OrderedResult, predicted: OrderedResult, sharers: Iterable[str]
) -> str:
    """Why request ``rid``'s hits differ between two orders (a key of :data:`REASONS`).

    ``sharers``: the other requests that share a block with it."""
    if measured.in_flight.get(rid) != predicted.in_flight.get(rid):
        return "in_flight"
    never = 1 << 62
    get_m, get_p = measured.get_seq.get(rid, never), predicted.get_seq.get(rid, never)
    for other in sharers:
        done_m, done_p = measured.put_done.get(other, {}), predicted.put_done.get(other, {})
        for path in WRITE_PATHS:
            if (done_m.get(path, never) < get_m) != (done_p.get(path, never) < get_p):
                return "put_order"
    return "eviction_order"


def sharers_index(inp: ReplayInput) -> dict[int, list[str]]:
    """Block key -> the requests holding it (to find who shares blocks with whom)."""
    index: dict[int, list[str]] = {}
    for req in inp.requests:
        for key in req.keys:
            index.setdefault(key, []).append(req.request_id)
    return index
