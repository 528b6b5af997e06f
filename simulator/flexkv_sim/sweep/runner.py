"""Running a sweep: each grid point replayed in a worker process, or in a Ray actor.

A worker loads (or generates) the scenario's trace once, when it starts, and keeps it and
its re-blockings for every point it runs; points only carry their grid values. The
local executor is a ``ProcessPoolExecutor`` of ``jobs`` processes (``jobs=1`` runs in
this process); the Ray executor starts ``jobs`` actors on a cluster (``ray.init``, a
local one when no address is given). Ray is optional: without it, :class:`SweepError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..hardware import DEFAULT_PROFILES, HardwareProfile, load_profiles
from .grid import grid_points, split_point
from .scenario import MODES, Scenario, load_trace, point_config, prepare_point

RESULTS_SCHEMA_VERSION = 1
EXECUTORS = ("local", "ray")
TIERS = ("gpu", "cpu", "ssd", "remote")
LATENCIES = (("get_s", "get"), ("ttft_s", "ttft"))
PERCENTILES = ("p50", "p90", "p99")


class SweepError(Exception):
    """The sweep cannot run as asked (an executor that is not installed)."""


@dataclass
class SweepResult:
    """Rows (one per grid point, in grid order) and how the sweep ran."""

    axes: list[tuple[str, list[Any]]]
    rows: list[dict[str, Any]]
    columns: list[str]
    mode: str
    executor: str
    jobs: int
    wall_s: float
    meta: dict[str, Any] = field(default_factory=dict)


def result_columns(axes: Sequence[tuple[str, Sequence[Any]]], mode: str) -> list[str]:
    """Columns of ``results.csv``: the grid keys, then the results (SCHEMA.md)."""
    cols = [
        "point",
        *(k for k, _ in axes),
        "mode",
        "hit_rate",
        *(f"hit_rate_{t}" for t in TIERS),
        "requests",
        "gets",
        "prompt_tokens",
        "gets_in_flight",
        "block_tokens",
        "cpu_blocks",
        "ssd_blocks",
        "remote_blocks",
    ]
    if mode == "timing":
        cols += [f"{name}_{p}_s" for _, name in LATENCIES for p in PERCENTILES]
        cols += ["profiles"]
    return [*cols, "config_hash", "wall_s", "load_s", "worker", "schema_version"]


class PointWorker:
    """One worker's state: the scenario's trace (loaded once) and its re-blockings."""

    def __init__(self, scenario: Scenario, mode: str) -> None:
        self.scenario = scenario
        self.mode = mode
        self.loaded = load_trace(scenario)
        self.reblocked: dict[int, list[Any]] = {}
        self.profiles: dict[tuple[str, ...], HardwareProfile] = {}
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def run(self, index: int, point: dict[str, Any]) -> dict[str, Any]:
        """Replay one grid point; returns its row of results."""
        overrides, hardware = split_point(point)
        inp = prepare_point(self.loaded, point_config(self.scenario, overrides), self.reblocked)
        row: dict[str, Any] = {"point": index, **point, "mode": self.mode}
        if self.mode == "timing":
            from ..replay.run import timing_result
            from ..replay.timing import replay_timing

            names = hardware or self.scenario.hardware or DEFAULT_PROFILES
            if names not in self.profiles:
                self.profiles[names] = load_profiles(names)
            timed = replay_timing(inp, self.profiles[names], progress=False)
            summary = timing_result(inp, timed, names).summary()
            latency = summary["latency"]
            for metric, name in LATENCIES:
                for p in PERCENTILES:
                    row[f"{name}_{p}_s"] = latency[metric][p]
            row["profiles"] = "+".join(names)
        else:
            from ..replay import replay_hitrate
            from ..replay.run import hitrate_result

            summary = hitrate_result(inp, replay_hitrate(inp, progress=False)).summary()
        by_tier = summary["hit_rate_by_tier"]
        cc = inp.config.cache_config
        row.update(
            {
                "hit_rate": summary["hit_rate"],
                **{f"hit_rate_{t}": by_tier.get(t, 0.0) for t in TIERS},
                "requests": summary["requests"],
                "gets": summary["gets"],
                "prompt_tokens": summary["prompt_tokens"],
                "gets_in_flight": summary["gets_in_flight"],
                "block_tokens": cc.tokens_per_block,
                "cpu_blocks": cc.num_cpu_blocks,
                "ssd_blocks": cc.num_ssd_blocks,
                "remote_blocks": cc.num_remote_blocks,
                "config_hash": summary["provenance"]["config_hash"],
                "wall_s": summary["wall_s"],
                "load_s": self.loaded.load_s,
                "worker": self.name,
                "schema_version": RESULTS_SCHEMA_VERSION,
            }
        )
        return row


# One worker per process of the local pool (set by the pool's initializer).
_PROCESS_WORKER: dict[str, PointWorker] = {}


def _init_process(scenario: Scenario, mode: str) -> None:
    _PROCESS_WORKER["worker"] = PointWorker(scenario, mode)


def _run_in_process(index: int, point: dict[str, Any]) -> dict[str, Any]:
    return _PROCESS_WORKER["worker"].run(index, point)


def check_points(scenario: Scenario, points: Sequence[dict[str, Any]]) -> None:
    """Fail before any worker starts: every point's config and hardware must load."""
    for point in points:
        overrides, hardware = split_point(point)
        point_config(scenario, overrides)
        if hardware is not None:
            load_profiles(hardware)
    if scenario.hardware:
        load_profiles(scenario.hardware)


def run_sweep(
    scenario: Scenario,
    axes: Sequence[tuple[str, Sequence[Any]]],
    *,
    jobs: int = 1,
    mode: str | None = None,
    executor: str = "local",
    address: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Replay every point of the grid ``axes`` over ``scenario``; rows in grid order.

    ``mode`` overrides the scenario's. ``on_row`` sees each row as it completes (in
    completion order). Config errors of any point are raised before work starts.
    """
    mode = mode or scenario.mode
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    axes = [(k, list(v)) for k, v in axes]
    points = grid_points(axes)
    check_points(scenario, points)
    rows: list[dict[str, Any]] = []

    def collect(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    workers = min(jobs, len(points))
    begin = time.perf_counter()
    if executor == "ray":
        _run_ray(scenario, mode, points, workers, address, collect)
    elif workers == 1:
        worker = PointWorker(scenario, mode)
        for i, point in enumerate(points):
            collect(worker.run(i, point))
    else:
        _run_pool(scenario, mode, points, workers, collect)
    wall_s = time.perf_counter() - begin
    rows.sort(key=lambda r: r["point"])
    return SweepResult(
        axes,
        rows,
        result_columns(axes, mode),
        mode,
        executor,
        workers,
        wall_s,
        {"address": address} if address else {},
    )


def _run_pool(
    scenario: Scenario,
    mode: str,
    points: Sequence[dict[str, Any]],
    workers: int,
    collect: Callable[[dict[str, Any]], None],
) -> None:
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_init_process, initargs=(scenario, mode)
    ) as pool:
        pending = {pool.submit(_run_in_process, i, p) for i, p in enumerate(points)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()  # type: ignore[misc]
                collect(future.result())


def _run_ray(
    scenario: Scenario,
    mode: str,
    points: Sequence[dict[str, Any]],
    workers: int,
    address: str | None,
    collect: Callable[[dict[str, Any]], None],
) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise SweepError(
            f"--executor ray needs Ray, which is not importable ({exc}); "
            "install it with: pip install ray"
        ) from None
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(PointWorker)
        actors = [actor.remote(scenario, mode) for _ in range(workers)]
        pool = ActorPool(actors)
        for row in pool.map_unordered(lambda a, v: a.run.remote(*v), list(enumerate(points))):
            collect(row)
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
