"""The emulated serving engine: GPU block slots, its prefix cache, one request's life.

GPU slots ``0 .. num_gpu_blocks - 1`` belong to the prefix cache
(``serving_config.num_gpu_blocks``); the slots after them are the working pool that
running requests draw from, first come first served (:mod:`..serving_pool`). Per
request, in the order the twin's timing replay uses: match the prefix cache, take
working slots, FlexKV GET into the request's slots, the emulated prefill (the missed
blocks are filled, and the request is held for at least the compute model's prefill
time), FlexKV PUT, decode beside the PUT; once both are over the prefix cache keeps the
request's blocks and its working slots are freed. The byte check of the loaded blocks
runs inside the emulated prefill's window (or, without a compute model, while the PUT
moves), so the harness's own work does not delay what the twin models.

Every call that the eviction policies see gets ``now`` from the replay's clock, read at
the call, so that concurrent requests stamp the index in the order they touch it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import ComputeModel
from ..core.keys import tokens_in
from ..core.paths import CACHE_TIERS, GPU
from ..gpu_cache import GpuPrefixCache
from ..kv_manager import KVManager, KVResult
from ..request_life import tier_tokens
from ..serving_pool import WorkingPool
from ..trace import RequestRecord
from .pattern import fill_slots, mismatched_slots


@dataclass
class IntegrityFailure:
    request_id: str
    block: int  # position in the request
    key: int
    tier: str
    slot: int

    def __str__(self) -> str:
        return (
            f"request {self.request_id}: block {self.block} (key {self.key:#x}) loaded from "
            f"{self.tier} into GPU slot {self.slot} does not match its bytes"
        )


@dataclass
class SlotPool:
    """Working GPU slots; ``take`` waits, first come first served, until enough are free."""

    first: int
    count: int
    _free: list[int] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._free = list(range(self.first + self.count - 1, self.first - 1, -1))
        self._order = WorkingPool(self.count)
        self._granted: set[object] = set()

    def take(self, n: int) -> list[int]:
        with self._cond:
            ticket = object()
            if not self._order.request(n, ticket):
                self._cond.wait_for(lambda: ticket in self._granted)
                self._granted.discard(ticket)
            out = self._free[-n:] if n else []
            del self._free[len(self._free) - n :]
            return out

    def give(self, slots: list[int]) -> None:
        with self._cond:
            self._free.extend(slots)
            granted = self._order.release(len(slots))
            if granted:
                self._granted.update(granted)
                self._cond.notify_all()


Clock = Callable[[RequestRecord], float]


class ServingEmulator:
    """Runs requests through a :class:`KVManager` as a serving engine would.

    ``clock(req)``: the time the index sees for a call made now on behalf of ``req``
    (the replay's trace clock; one request at a time, simply ``req.t``).
    """

    def __init__(
        self, kv: KVManager, num_prefix_blocks: int, working_blocks: int,
        compute: ComputeModel, *, emulate_compute: bool, clock: Clock | None = None,
    ) -> None:
        self.kv = kv
        self.layout = kv.layout
        self.prefix = GpuPrefixCache(num_prefix_blocks)
        self.pool = SlotPool(num_prefix_blocks, working_blocks)
        self.compute = compute
        self.emulate_compute = emulate_compute
        self.clock: Clock = clock or (lambda req: req.t)
        # perf_counter -> the replay's clock for the records (request_life.COLUMNS)
        self.elapsed: Callable[[float], float] = lambda t: t
        self.failures: list[IntegrityFailure] = []
        # CPU seconds of the requests' threads in the prefill window (writing the missed
        # blocks, checking the loaded ones): the twin's ``interpreter.prefill_per_block``
        self.prefill_cpu_s = 0.0
        self._lock = threading.Lock()  # the prefix cache and slot contents

    def serve(self, req: RequestRecord, arrived: float) -> tuple[Any, ...]:
        """One request; returns its row of ``RUN_COLUMNS``. ``arrived``: perf_counter."""
        kv, keys, tokens, tpb = self.kv, req.keys, req.num_tokens, self.kv.tokens_per_block
        clock, gpu = self.clock, kv.gpu.kv
        with self._lock:
            gpu_blocks, handle = self.prefix.acquire(keys, clock(req))
            cached = self.prefix.slots(handle, gpu_blocks)
        working = self.pool.take(len(keys) - gpu_blocks)
        started = time.perf_counter()
        slots = cached + working
        result: KVResult | None = None
        loaded = gpu_blocks
        get_s = 0.0
        if req.op == "get":
            rid = kv.get_async(keys, slots, num_tokens=tokens, gpu_matched_blocks=gpu_blocks,
                               trace_id=req.request_id, now=clock(req))
            result = kv.wait([rid])[rid]
            get_s = result.latency_s  # the engine's own latency, from its plan to its end
            loaded = max(result.loaded_blocks, gpu_blocks)
        # The emulated prefill computes the missed blocks: their bytes are written, and
        # the request is held for at least the compute model's time. That window also
        # hides the byte check of the loaded blocks; without a compute model the check
        # runs beside the PUT instead (both only read the slots).
        began, cpu = time.perf_counter(), time.thread_time()
        fill_slots(gpu, self.layout, slots[loaded:], keys[loaded:])
        if result is not None and self.emulate_compute:
            self._check(req, slots, result)
        self._add_prefill_cpu(time.thread_time() - cpu)
        prefill_s = 0.0
        if self.emulate_compute:
            reused = tokens_in(0, loaded, tpb, tokens)
            left = self.compute.prefill_time(tokens - reused, reused) - (
                time.perf_counter() - began)
            if left > 0:
                time.sleep(left)
            prefill_s = time.perf_counter() - began
        first_token = time.perf_counter()
        ttft_s = (started - arrived) + get_s + prefill_s
        pid = kv.put_async(keys, slots, num_tokens=tokens, trace_id=req.request_id,
                           now=clock(req))
        if result is not None and not self.emulate_compute:
            self._check(req, slots, result)
        decode_s = req.output_tokens * self.compute.decode_step_s if self.emulate_compute else 0.0
        left = first_token + decode_s - time.perf_counter()
        if left > 0:
            time.sleep(left)  # decode runs beside the PUT
        put_s = kv.wait([pid])[pid].latency_s
        with self._lock:
            start, added = self.prefix.release(keys, handle, clock(req))
            if added:
                fill_slots(gpu, self.layout, added, keys[start : start + len(added)])
        self.pool.give(working)
        served = tier_tokens(gpu_blocks, result.served if result is not None else {}, tpb,
                             tokens)
        arrival = self.elapsed(arrived)
        return (
            req.request_id, arrival, req.op, tokens, len(keys), *served,
            bool(result and result.in_flight), started - arrived, get_s, prefill_s, ttft_s,
            decode_s, put_s, self.elapsed(time.perf_counter()),
        )

    def _add_prefill_cpu(self, seconds: float) -> None:
        with self._lock:
            self.prefill_cpu_s += seconds

    def _check(self, req: RequestRecord, slots: list[int], result: KVResult) -> None:
        first = result.hit_blocks.get(GPU, 0)
        tiers = [t for t in CACHE_TIERS for _ in range(result.hit_blocks.get(t, 0))]
        end = first + len(tiers)
        bad = mismatched_slots(self.kv.gpu.kv, self.layout, slots[first:end],
                               req.keys[first:end])
        if bad:
            with self._lock:
                self.failures.extend(
                    IntegrityFailure(req.request_id, first + i, req.keys[first + i], tiers[i],
                                     slots[first + i])
                    for i in bad
                )
