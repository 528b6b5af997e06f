"""Prometheus metrics of a KV manager (opt-in: ``KVManager(..., metrics=Metrics())``).

Each :class:`Metrics` owns its registry (nothing goes to prometheus_client's global
default registry), so several managers, or tests, never see each other's series.
:meth:`Metrics.serve` starts the HTTP exporter on 127.0.0.1.

Series (all prefixed ``flexkv_``):

- counters ``hit_tokens_total{tier}`` (gpu, cpu, ssd, remote: tokens each served to
  GETs, the operator guide's accounting), ``miss_tokens_total{tier}`` (tokens a GET
  looked up in a cache tier and did not find there or in an earlier one; the last tier's
  misses are the tokens left to prefill), ``transfer_bytes_total{path}``,
  ``transfer_ops_total{path}`` (ops that finished), ``failed_ops_total{path}``,
  ``requests_total{op,status}``; from the tiers at scrape time ``evicted_blocks_total{tier}``
  and ``alloc_failures_total{tier}``; with an SSD tier, ``ssd_checksum_errors_total``
  (blocks read back that did not match their slot-table record) and
  ``ssd_dropped_blocks_total`` (blocks dropped from the SSD index as unreadable);
- gauges ``inflight_ops`` and ``tier_used_blocks{tier}`` / ``tier_capacity_blocks{tier}``;
- histograms ``match_seconds{op}``, ``request_latency_seconds{op}`` (get, put,
  prefetch), ``transfer_queue_seconds{path}`` and ``transfer_seconds{path}``.

The manager calls :meth:`transfer_done` per finished op and :meth:`request_done` per
finished request, under its lock; state (tier usage, evictions) is read when scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from .core.paths import CACHE_TIERS, GPU

if TYPE_CHECKING:
    from .kv_manager import KVManager, KVResult
    from .transfer.protocol import Done

#: Histogram buckets in seconds: 1 us .. ~33 s, doubling.
BUCKETS = tuple(1e-6 * 2**i for i in range(26))



class Metrics:
    """The metric families of one KV manager, in a registry of their own."""

    def __init__(self, registry: Any = None, *, namespace: str = "flexkv") -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        kw: dict[str, Any] = {"namespace": namespace, "registry": self.registry}
        hist: dict[str, Any] = {**kw, "buckets": BUCKETS}
        self.namespace = namespace
        self.hit_tokens = Counter("hit_tokens", "Prompt tokens served per tier", ["tier"], **kw)
        self.miss_tokens = Counter(
            "miss_tokens", "Prompt tokens looked up in a cache tier and not found", ["tier"], **kw
        )
        self.transfer_bytes = Counter("transfer_bytes", "Bytes moved per path", ["path"], **kw)
        self.transfer_ops = Counter("transfer_ops", "Transfer ops finished per path", ["path"],
                                    **kw)
        self.failed_ops = Counter("failed_ops", "Transfer ops that failed", ["path"], **kw)
        self.requests = Counter("requests", "Requests finished", ["op", "status"], **kw)
        self.match_seconds = Histogram("match_seconds", "Planning (index match) time",
                                       ["op"], **hist)
        self.latency_seconds = Histogram("request_latency_seconds", "Request latency",
                                         ["op"], **hist)
        self.queue_seconds = Histogram("transfer_queue_seconds",
                                       "Time an op waited for its device", ["path"], **hist)
        self.transfer_seconds = Histogram("transfer_seconds", "Time an op moved bytes",
                                          ["path"], **hist)
        self._manager: KVManager | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.registry.register(_StateCollector(self))

    # -- hooks (called by the manager under its lock) ----------------------------------
    def attach(self, manager: KVManager) -> None:
        """Read tier usage, evictions and in-flight ops from ``manager`` when scraped."""
        if self._manager is not None and self._manager is not manager:
            raise ValueError("a Metrics instance serves one KVManager")
        self._manager = manager

    def transfer_done(self, path: str, done: Done) -> None:
        if done.ok:
            self.transfer_bytes.labels(path).inc(done.num_bytes)
            self.transfer_ops.labels(path).inc()
        else:
            self.failed_ops.labels(path).inc()
        self.queue_seconds.labels(path).observe(done.queue_s)
        self.transfer_seconds.labels(path).observe(done.transfer_s)

    def request_done(self, result: KVResult, served: dict[str, int] | None,
                     num_tokens: int, tiers: Collection[str]) -> None:
        """``served``: tokens per tier of a GET (None for PUT and prefetch); ``tiers``:
        the cache tiers configured."""
        op = result.kind
        self.requests.labels(op, result.status).inc()
        self.match_seconds.labels(op).observe(result.match_s)
        self.latency_seconds.labels(op).observe(result.latency_s)
        if served is None:
            return
        left = num_tokens
        for tier in (GPU, *CACHE_TIERS):
            got = served.get(tier, 0)
            if got:
                self.hit_tokens.labels(tier).inc(got)
            left -= got
            if tier != GPU and tier in tiers and left > 0:
                self.miss_tokens.labels(tier).inc(left)

    # -- the exporter ------------------------------------------------------------------
    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Start the HTTP exporter (``port`` 0: a free one); returns the port."""
        from prometheus_client import start_http_server

        if self._server is not None:
            raise RuntimeError("the exporter is already running")
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_port)

    def stop(self) -> None:
        """Stop the HTTP exporter, if running."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def text(self) -> str:
        """The exposition text, as a scrape would return it."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def __enter__(self) -> Metrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _StateCollector:
    """Series read from the attached manager's tiers at scrape time (no hook cost)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self.metrics.namespace
        evicted = CounterMetricFamily(f"{ns}_evicted_blocks", "Blocks evicted per tier",
                                      labels=["tier"])
        failures = CounterMetricFamily(f"{ns}_alloc_failures",
                                       "Allocations that found too few free blocks",
                                       labels=["tier"])
        used = GaugeMetricFamily(f"{ns}_tier_used_blocks", "Blocks in use per tier",
                                 labels=["tier"])
        capacity = GaugeMetricFamily(f"{ns}_tier_capacity_blocks", "Blocks per tier",
                                     labels=["tier"])
        inflight = GaugeMetricFamily(f"{ns}_inflight_ops", "Transfer ops submitted, not done")
        kv = self.metrics._manager
        ssd_mover = kv._movers.get("ssd_read") if kv is not None else None
        if kv is not None and ssd_mover is not None and kv.planner.ssd is not None:
            with kv._lock:
                checksum = ssd_mover.checksum_errors  # type: ignore[attr-defined]
                dropped = kv.planner.ssd.dropped_blocks
            yield CounterMetricFamily(f"{ns}_ssd_checksum_errors",
                                      "SSD blocks read back that did not match their record",
                                      value=checksum)
            yield CounterMetricFamily(f"{ns}_ssd_dropped_blocks",
                                      "SSD blocks dropped from the index as unreadable",
                                      value=dropped)
        if kv is not None:
            with kv._lock:
                for name, tier in kv.planner.tiers.items():
                    evicted.add_metric([name], tier.evicted_blocks)
                    failures.add_metric([name], getattr(tier, "alloc_failures", 0))
                    used.add_metric([name], tier.used)
                    capacity.add_metric([name], tier.capacity)
                inflight.add_metric([], len(kv._jobs))
        yield from (evicted, failures, used, capacity, inflight)


__all__ = ["BUCKETS", "Metrics"]
