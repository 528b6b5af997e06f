"""One request's life in the timing replay (:mod:`.timing`), as a chain of calls.

The steps of :mod:`flexkv_engine.request_life`, each scheduled as a
:class:`~flexkv_sim.calls.Call` when it must wait (arrival, the match, the prefill, the
decode) or called at once when nothing else can come between (a transfer graph's end
calls the next step itself).
"""

from __future__ import annotations

from heapq import heappush
from typing import TYPE_CHECKING, Any

from flexkv_engine.request_life import tier_tokens

from ..calls import NORMAL, Call, call_later
from .store import fail_lost_reads

if TYPE_CHECKING:
    from .timing import TimingModel


class RequestRun:
    """One request's life in the model, as a chain of event callbacks (cheaper than a process)."""

    __slots__ = (
        "arrival",
        "decode_s",
        "get_s",
        "gpu_blocks",
        "gpu_handle",
        "graph",
        "hits",
        "in_flight",
        "model",
        "pending",
        "prefill_s",
        "put_done",
        "req",
        "slot",
        "start",
        "ttft_s",
        "working",
    )

    def __init__(self, model: TimingModel, req: Any, arrival: float) -> None:
        self.model = model
        self.req = req
        self.slot: Any = None
        self.arrival = arrival  # the trace's time, or when the previous request ended
        self.start = arrival
        self.pending = 0  # of the PUT and the decode, those not over yet

    def queue(self) -> None:
        model = self.model
        self.slot = model.slots.request()  # type: ignore[union-attr]
        self.slot.callbacks.append(self.admitted)

    def admitted(self, _event: Any = None) -> None:
        model, req = self.model, self.req
        if model.gpu_cache.index is None:  # no GPU prefix cache: acquire finds nothing
            self.gpu_blocks, self.gpu_handle = 0, None
        else:
            self.gpu_blocks, self.gpu_handle = model.gpu_cache.acquire(req.keys, model.env._now)
        self.working = len(req.keys) - self.gpu_blocks
        if model.working.request(self.working, self):
            self.granted()

    def granted(self) -> None:
        model = self.model
        self.start = model.env._now
        if model.match_s and self.req.op == "get":
            if model.host is None:  # call_later, inlined
                env = model.env
                heappush(env._queue, (env._now + model.match_s, NORMAL, next(env._eid),
                                      Call(self.get)))
            else:
                model.host.run(model.match_s, self.get)
        else:
            self.get()

    def get(self) -> None:
        model, req = self.model, self.req
        self.in_flight = False
        self.hits = (0, 0, 0)
        if req.op != "get":
            self.get_s = 0.0
            self.prefill()
            return
        planner, store, now = model.planner, model.store, model.env._now
        known = store.known(req.keys, planner.remote_ready(req.keys)) if store else 0
        graph = planner.plan_get(
            req.request_id, req.keys, req.num_tokens, now,
            gpu_blocks=self.gpu_blocks, remote_known=known,
        )
        if model.events is not None:
            model.log("get", req.request_id, now=now, gpu_blocks=self.gpu_blocks,
                      remote_known=known)
        if store is not None:
            fail_lost_reads(planner, graph, store, None if model.events is None else (
                lambda op, bad: model.log("done", req.request_id, graph="get", op_id=op.op_id,
                                          ok=False, first_bad=bad)))
        self.in_flight = graph.in_flight
        self.graph = graph
        if graph.done:
            self.loaded()
        else:
            model.execute(graph, self.loaded)

    def loaded(self) -> None:
        # What was served, once the graph ended (a failed read shrinks it).
        model = self.model
        self.hits = tier_tokens(0, self.graph.served, model.tpb, self.req.num_tokens)[1:]
        self.graph = None  # done with: freed now, not left for the cyclic collector
        self.get_s = model.env._now - self.start
        self.prefill()

    def prefill(self) -> None:
        model, req = self.model, self.req
        tokens = req.num_tokens
        reused = min(self.gpu_blocks * model.tpb, tokens) + sum(self.hits)
        compute_s = model.compute.prefill_time(tokens - reused, reused)
        work = model.prefill_cpu_s * len(req.keys)
        if work:  # the prefill window ends once the compute and the host work are over
            self._prefill_with_host(compute_s, work)
            return
        self.prefill_s = compute_s
        if compute_s:  # call_later, inlined
            env = model.env
            heappush(env._queue, (env._now + compute_s, NORMAL, next(env._eid),
                                  Call(self.first_token)))
        else:
            self.first_token()

    def _prefill_with_host(self, compute_s: float, work: float) -> None:
        model = self.model
        began, self.pending = model.env._now, 2

        def over() -> None:
            self.pending -= 1
            if not self.pending:
                self.prefill_s = model.env._now - began
                self.first_token()

        model.cpu(work, over)
        call_later(model.env, compute_s, over)

    def first_token(self) -> None:
        model, req, env = self.model, self.req, self.model.env
        now = env._now
        self.ttft_s = now - self.arrival
        self.put_done = now
        self.pending = 2
        if model.put_cpu_s:  # the host work beside the PUT
            self.pending += 1
            model.cpu(model.put_cpu_s * len(req.keys), self.decoded)
        put = model.planner.plan_put(req.request_id, req.keys, req.num_tokens, now)
        if model.events is not None:
            model.log("put", req.request_id, now=now, gpu_blocks=0, remote_known=0)
        if put.done:
            self.pending -= 1
        else:
            model.execute(put, self.put_finished)
        self.decode_s = decode_s = req.output_tokens * model.compute.decode_step_s
        if decode_s:  # call_later, inlined
            heappush(env._queue, (now + decode_s, NORMAL, next(env._eid), Call(self.decoded)))
        else:
            self.decoded()

    def put_finished(self) -> None:
        self.put_done = self.model.env._now
        self.pending -= 1
        if not self.pending:
            self.finish()

    def decoded(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.finish()

    def finish(self) -> None:
        """PUT and decode are over: the GPU blocks are free to keep or give back."""
        model, req, env = self.model, self.req, self.model.env
        if self.gpu_handle is not None:  # release does nothing without one
            model.gpu_cache.release(req.keys, self.gpu_handle, env._now)
        if self.slot is not None:
            model.slots.release(self.slot)  # type: ignore[union-attr]
        for waiter in model.working.release(self.working):
            waiter.granted()
        gpu_tokens = min(self.gpu_blocks * model.tpb, req.num_tokens)
        if model.sequential:
            model.submit_next()
        model.records.append((
            req.request_id,
            self.arrival,
            req.op,
            req.num_tokens,
            len(req.keys),
            gpu_tokens,
            *self.hits,
            self.in_flight,
            self.start - self.arrival,
            self.get_s,
            self.prefill_s,
            self.ttft_s,
            self.decode_s,
            self.put_done - (self.arrival + self.ttft_s),  # PUT time after first token
            env._now,
        ))
