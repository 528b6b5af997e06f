"""Prometheus metrics of the KV manager: they agree with the planner's own stats."""

from __future__ import annotations

import json
import urllib.request

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("prometheus_client")

from click.testing import CliRunner  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from flexkv_engine.config import load_config  # noqa: E402
from flexkv_engine.core.paths import PATHS  # noqa: E402
from flexkv_engine.kv_manager import KVManager  # noqa: E402
from flexkv_engine.metrics import Metrics  # noqa: E402

TINY = [
    "model_config.num_layers=2", "model_config.num_kv_heads=2", "model_config.head_size=16",
    "model_config.dtype=float16", "cache_config.tokens_per_block=4",
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_counters_equal_the_planner_stats_over_http() -> None:
    cfg = load_config(None, overrides=[*TINY, "cache_config.num_cpu_blocks=12"],
                      env={}).resolve()
    before = {m.name for m in REGISTRY.collect()}
    with Metrics() as metrics:
        port = metrics.serve(0)
        kv = KVManager(cfg, num_gpu_blocks=32, metrics=metrics)
        with kv:
            gets = puts = 0
            for i in range(10):
                keys = [(i // 2) % 4 * 100 + j for j in range(1, 5)]  # each prefix twice
                rid = kv.get_async([*keys, 999], list(range(5)), num_tokens=18)
                assert kv.wait([rid])[rid].status == "done"
                rid = kv.put_async(keys, list(range(4)))
                assert kv.wait([rid])[rid].status == "done"
                gets, puts = gets + 1, puts + 1
            stats = kv.stats()
            planner = kv.planner.stats
            block_bytes = cfg.model_config.bytes_per_block(kv.tokens_per_block)
            tiers = {n: (t.used, t.capacity, t.evicted_blocks, t.alloc_failures)
                     for n, t in kv.planner.tiers.items()}
        scraped = samples(scrape(port))
    assert metrics.port is None  # stopped
    assert {m.name for m in REGISTRY.collect()} == before  # nothing in the global registry

    for path in PATHS:
        assert value(scraped, "flexkv_transfer_bytes_total", path=path) == (
            planner.blocks_by_path[path] * block_bytes)
        assert value(scraped, "flexkv_transfer_ops_total", path=path) == (
            planner.ops_by_path[path])
        assert value(scraped, "flexkv_failed_ops_total", path=path) == 0
        n = planner.ops_by_path[path]
        assert value(scraped, "flexkv_transfer_seconds_count", path=path) == n
        assert value(scraped, "flexkv_transfer_queue_seconds_count", path=path) == n
    assert planner.blocks_by_path["d2h"] > 0 and planner.blocks_by_path["h2d"] > 0
    for tier, tokens in planner.tokens_by_tier.items():
        assert value(scraped, "flexkv_hit_tokens_total", tier=tier) == tokens
    hits = sum(planner.tokens_by_tier.values())
    assert value(scraped, "flexkv_miss_tokens_total", tier="cpu") == (
        planner.prompt_tokens - hits) > 0
    for op, n in (("get", gets), ("put", puts)):
        assert value(scraped, "flexkv_requests_total", op=op, status="done") == n
        assert value(scraped, "flexkv_request_latency_seconds_count", op=op) == n
        assert value(scraped, "flexkv_match_seconds_count", op=op) == n
    assert stats["gets"] == gets and stats["puts"] == puts
    for tier, (used, capacity, evicted, failures) in tiers.items():
        assert value(scraped, "flexkv_tier_used_blocks", tier=tier) == used
        assert value(scraped, "flexkv_tier_capacity_blocks", tier=tier) == capacity
        assert value(scraped, "flexkv_evicted_blocks_total", tier=tier) == evicted
        assert value(scraped, "flexkv_alloc_failures_total", tier=tier) == failures
    assert tiers["cpu"][2] > 0  # the 12-block CPU tier had to evict
    assert value(scraped, "flexkv_inflight_ops") == 0


def test_failed_ops_are_counted() -> None:
    cfg = load_config(None, overrides=[*TINY, "cache_config.num_cpu_blocks=8"],
                      env={}).resolve()
    metrics = Metrics()
    with KVManager(cfg, num_gpu_blocks=8, metrics=metrics) as kv:
        mover = kv._movers["d2h"]
        mover._copy = lambda job: (_ for _ in ()).throw(RuntimeError("boom"))
        rid = kv.put_async([1, 2], [0, 1])
        assert kv.wait([rid], timeout=10)[rid].status == "failed"
        failed = kv.failed_ops
    scraped = samples(metrics.text())
    assert failed == 1
    assert value(scraped, "flexkv_failed_ops_total", path="d2h") == 1
    assert value(scraped, "flexkv_transfer_bytes_total", path="d2h") == 0
    assert value(scraped, "flexkv_requests_total", op="put", status="failed") == 1


def test_without_metrics_the_manager_has_none() -> None:
    cfg = load_config(None, overrides=[*TINY, "cache_config.num_cpu_blocks=8"],
                      env={}).resolve()
    with KVManager(cfg, num_gpu_blocks=8) as kv:
        assert kv.metrics is None
    metrics = Metrics()
    with KVManager(cfg, num_gpu_blocks=8, metrics=metrics) as kv:
        assert kv.metrics is metrics


def test_replay_serves_metrics_on_a_port(tmp_path, monkeypatch) -> None:
    from flexkv_engine import metrics as metrics_mod
    from flexkv_engine.cli import main as run_main
    from flexkv_sim.workloads import generate, write_trace

    trace = tmp_path / "chat.jsonl"
    header, records = generate("multiturn", requests=30, seed=3, rate=4.0)
    write_trace(trace, header, records)
    seen: dict[str, object] = {}
    serve = metrics_mod.Metrics.serve

    def spy(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        seen["addr"], seen["metrics"] = addr, self
        return serve(self, port, addr)

    monkeypatch.setattr(metrics_mod.Metrics, "serve", spy)
    result = CliRunner().invoke(run_main, [
        "replay", str(trace), "--speed", "max", "--device", "cpu", "--json",
        "--metrics-port", "0",
        *[a for o in (*TINY[:4], "cache_config.num_cpu_blocks=200") for a in ("--set", o)],
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metrics = seen["metrics"]
    assert isinstance(metrics, Metrics) and seen["addr"] == "127.0.0.1"
    assert metrics.port is None  # the exporter stopped with the replay
    scraped = samples(metrics.text())
    gets = value(scraped, "flexkv_request_latency_seconds_count", op="get")
    assert gets == summary["requests"] == 30
    assert value(scraped, "flexkv_request_latency_seconds_count", op="put") > 0
    assert value(scraped, "flexkv_hit_tokens_total", tier="cpu") > 0
