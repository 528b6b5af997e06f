"""The emulated serving engine: GPU block slots, its prefix cache, one request's life.

GPU slots ``0 .. num_gpu_blocks - 1`` belong to the prefix cache
(``serving_config.num_gpu_blocks``); the slots after them are the working pool that
running requests draw from. Per request, in the order the twin's replays use: match the
prefix cache, FlexKV GET into the request's slots, check every loaded block, fill the
missed ones (the emulated prefill), FlexKV PUT, decode, then the prefix cache keeps the
request's blocks and its working slots are freed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import ComputeModel
from ..core.keys import tokens_in
from ..core.paths import CACHE_TIERS, GPU
from ..gpu_cache import GpuPrefixCache
from ..kv_manager import KVManager, KVResult
from ..trace import RequestRecord
from .pattern import fill_slot, slot_matches


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
    """Working GPU slots; ``take`` waits until enough are free."""

    first: int
    count: int
    _free: list[int] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._free = list(range(self.first + self.count - 1, self.first - 1, -1))

    def take(self, n: int) -> list[int]:
        if n > self.count:
            raise ValueError(f"a request needs {n} GPU blocks; the working pool has {self.count}")
        with self._cond:
            self._cond.wait_for(lambda: len(self._free) >= n)
            out = self._free[-n:] if n else []
            del self._free[len(self._free) - n :]
            return out

    def give(self, slots: list[int]) -> None:
        with self._cond:
            self._free.extend(slots)
            self._cond.notify_all()


class ServingEmulator:
    """Runs requests through a :class:`KVManager` as a serving engine would."""

    def __init__(
        self, kv: KVManager, num_prefix_blocks: int, working_blocks: int,
        compute: ComputeModel, *, emulate_compute: bool,
    ) -> None:
        self.kv = kv
        self.layout = kv.layout
        self.prefix = GpuPrefixCache(num_prefix_blocks)
        self.pool = SlotPool(num_prefix_blocks, working_blocks)
        self.compute = compute
        self.emulate_compute = emulate_compute
        self.failures: list[IntegrityFailure] = []
        self._lock = threading.Lock()  # the prefix cache and slot contents

    def serve(self, req: RequestRecord, now: float, arrived: float) -> tuple[Any, ...]:
        """One request; returns its row of ``RUN_COLUMNS``. ``now`` is trace time."""
        kv, keys, tokens, tpb = self.kv, req.keys, req.num_tokens, self.kv.tokens_per_block
        with self._lock:
            gpu_blocks, handle = self.prefix.acquire(keys, now)
            cached = self.prefix.slots(handle, gpu_blocks)
        working = self.pool.take(len(keys) - gpu_blocks)
        started = time.perf_counter()
        slots = cached + working
        result: KVResult | None = None
        loaded = gpu_blocks
        get_s = 0.0
        if req.op == "get":
            rid = kv.get_async(keys, slots, num_tokens=tokens, gpu_matched_blocks=gpu_blocks,
                               trace_id=req.request_id, now=now)
            result = kv.wait([rid])[rid]
            # The engine's own latency: the byte check below is the harness's work, not
            # something a serving engine would wait for.
            get_s = result.latency_s
            loaded = max(result.loaded_blocks, gpu_blocks)
            self._check(req, slots, result)
        for i in range(loaded, len(keys)):
            fill_slot(kv.gpu.kv, self.layout, slots[i], keys[i])
        reused = tokens_in(0, loaded, tpb, tokens)
        prefill_s = self.compute.prefill_time(tokens - reused, reused)
        if not self.emulate_compute:
            prefill_s = 0.0
        elif prefill_s:
            time.sleep(prefill_s)
        ttft_s = (started - arrived) + get_s + prefill_s
        pid = kv.put_async(keys, slots, num_tokens=tokens, trace_id=req.request_id, now=now)
        put_s = kv.wait([pid])[pid].latency_s
        decode_s = req.output_tokens * self.compute.decode_step_s if self.emulate_compute else 0.0
        if decode_s:
            time.sleep(decode_s)
        with self._lock:
            start, added = self.prefix.release(keys, handle, now)
            for j, slot in enumerate(added):
                fill_slot(kv.gpu.kv, self.layout, slot, keys[start + j])
        self.pool.give(working)
        hits = result.hit_blocks if result is not None else {GPU: gpu_blocks}
        served = self._served_tokens(hits, tokens)
        return (
            req.request_id, req.t, req.op, tokens, len(keys), served[GPU],
            *(served[t] for t in CACHE_TIERS), bool(result and result.in_flight),
            started - arrived, get_s, prefill_s, ttft_s, decode_s, put_s,
            time.perf_counter() - arrived,
        )

    def _served_tokens(self, hits: dict[str, int], tokens: int) -> dict[str, int]:
        tpb, start, out = self.kv.tokens_per_block, 0, {}
        for tier in (GPU, *CACHE_TIERS):
            end = start + hits.get(tier, 0)
            out[tier] = tokens_in(start, end, tpb, tokens)
            start = end
        return out

    def _check(self, req: RequestRecord, slots: list[int], result: KVResult) -> None:
        position = result.hit_blocks.get(GPU, 0)
        for tier in CACHE_TIERS:
            for _ in range(result.hit_blocks.get(tier, 0)):
                slot = slots[position]
                if not slot_matches(self.kv.gpu.kv, self.layout, slot, req.keys[position]):
                    with self._lock:
                        self.failures.append(IntegrityFailure(
                            req.request_id, position, req.keys[position], tier, slot
                        ))
                position += 1
