"""Pacing a replay: requests at their timestamps (``speed`` x faster), or one at a time.

With ``speed=None`` ("max") requests run one at a time in trace order: each request's
GET, fill and PUT to every tier complete before the next starts, so its hits are
deterministic and equal the twin's hit-rate mode block for block. Otherwise a request
arrives at ``t / speed`` seconds after the first and runs on a worker thread of its own:
at most ``serving_config.max_concurrency`` requests at once (0, the default: no limit),
and no more than the working GPU blocks hold (:mod:`flexkv_engine.serving_pool`), as in
the twin's timing replay at the same speed. The clock the index sees is then the
replay's own, in compressed seconds (``t / speed`` at arrival), as the twin's.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kv_manager import KVManager
from ..replay_input import ReplayInput
from ..request_life import COLUMNS
from ..results import ReplayResult
from ..serving_pool import working_blocks
from ..summary import RUN_LATENCIES, latency_section
from ..trace import RequestRecord
from ..tracer import Tracer
from .resources import check_resources
from .serving import IntegrityFailure, ServingEmulator

RUN_COLUMNS = COLUMNS  # a request's row: request_life.COLUMNS, as the twin's
#: Worker threads at most when ``max_concurrency`` is 0 (no limit): requests beyond it
#: wait for a thread, which a replay this busy would show as queueing anyway.
MAX_THREADS = 1024


@dataclass
class HardwareRun:
    """A replay on hardware: its result and the loaded blocks that failed their check."""

    result: ReplayResult
    failures: list[IntegrityFailure] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """``self.result.summary()``."""
        return self.result.summary()

    @property
    def records(self) -> list[tuple[Any, ...]]:
        return self.result.records


def run_replay(
    inp: ReplayInput,
    *,
    device: str = "cpu",
    speed: float | None = None,
    prefill: str = "none",
    trace_path: Path | None = None,
    ssd_backend: str = "auto",
    progress: Any = None,
    metrics: Any = None,
) -> HardwareRun:
    """Replay ``inp`` through a real :class:`KVManager` on ``device``; check every block."""
    config = inp.config
    serving = config.serving_config
    concurrency = 1 if speed is None else serving.max_concurrency
    prefix_blocks = serving.num_gpu_blocks
    working = working_blocks(inp.requests, concurrency)
    pacing = {"type": "pacing", "speed": "max" if speed is None else speed, "prefill": prefill,
              "max_concurrency": concurrency, "working_blocks": working}
    longest = max((len(r.keys) for r in inp.requests), default=0)
    check_resources(config, device, prefix_blocks + working, longest)  # before allocating
    tracer = None
    if trace_path is not None:
        tracer = Tracer(str(trace_path), config, meta={"device": device, "pacing": pacing})
        tracer.write(pacing)
    # A replay starts from an empty SSD tier, as the twin does, unless the config asks
    # for what an earlier run stored (cache_config.ssd_restore set explicitly).
    restore = config.cache_config.ssd_restore if "cache_config.ssd_restore" in config.explicit \
        else False
    kv = KVManager(config, num_gpu_blocks=prefix_blocks + working, device=device,
                   ssd_backend=ssd_backend, tracer=tracer, metrics=metrics,
                   ssd_restore=restore)
    emulator = ServingEmulator(kv, prefix_blocks, working, serving.compute,
                               emulate_compute=prefill == "model")
    records: list[tuple[Any, ...]] = []
    begin, cpu = time.perf_counter(), time.process_time()
    # The records' clock: seconds since the replay began; paced, the first arrival is
    # at its trace time / speed, as in the twin.
    start = 0.0 if speed is None or not inp.requests else inp.requests[0].t / speed
    emulator.elapsed = lambda t: start + (t - begin)
    try:
        if speed is None:
            for req in inp.requests:
                arrived = time.perf_counter()
                _trace_request(tracer, req)
                records.append(emulator.serve(req, arrived))
                _tick(progress)
        else:
            records = _paced(emulator, inp.requests, speed, concurrency, tracer, progress)
        wall_s = time.perf_counter() - begin
        cpu_s = time.process_time() - cpu
    finally:
        kv.close()
    records.sort(key=lambda r: r[1])
    sections = {
        "integrity_failures": len(emulator.failures),
        "device": device,
        "ssd_backend": getattr(kv, "ssd_backend_name", None),
        "pacing": {k: v for k, v in pacing.items() if k != "type"},
        "latency": latency_section(records, RUN_COLUMNS, RUN_LATENCIES),
        "failed_ops": kv.failed_ops,
        # CPU seconds of the whole process during the replay, and of the requests'
        # prefill windows (the twin's interpreter model is fitted from them)
        "cpu": {"process_s": round(cpu_s, 6), "prefill_s": round(emulator.prefill_cpu_s, 6)},
        **{k: v for k, v in kv.stats().items() if k in ("remote_errors", "ssd_errors", "ssd")},
    }
    result = ReplayResult(inp, kv.planner, tool="flexkv-run",
                          mode="speed-max" if speed is None else "paced", wall_s=wall_s,
                          records=records, columns=RUN_COLUMNS, sections=sections)
    return HardwareRun(result, list(emulator.failures))


def _trace_request(tracer: Tracer | None, req: RequestRecord) -> None:
    if tracer is not None:
        tracer.request(req)


def _tick(progress: Any) -> None:
    if progress is not None:
        progress.update(1)


def _paced(
    emulator: ServingEmulator, requests: list[RequestRecord], speed: float, workers: int,
    tracer: Tracer | None, progress: Any,
) -> list[tuple[Any, ...]]:
    origin = requests[0].t if requests else 0.0
    begin = time.perf_counter()
    start = origin / speed  # the twin's clock at the first arrival

    def clock(_req: RequestRecord) -> float:
        return start + (time.perf_counter() - begin)

    emulator.clock = clock
    futures = []
    threads = workers if workers > 0 else min(max(len(requests), 1), MAX_THREADS)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flexkv-req") as pool:
        for req in requests:
            due = begin + (req.t - origin) / speed
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            _trace_request(tracer, req)
            futures.append(pool.submit(emulator.serve, req, time.perf_counter()))
        out = []
        for future in futures:
            out.append(future.result())
            _tick(progress)
    return out
