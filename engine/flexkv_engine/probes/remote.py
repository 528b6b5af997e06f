"""Remote store benchmark: put and get bandwidth and round-trip latency of each backend.

Objects are one block of a model's layout (default Llama-3-8B at 16 tokens per block:
2 MiB, the layout of ``flexkv-run bench gpu``), stored with their 40-byte header. Each
round puts ``blocks`` random blocks under fresh keys, in batches of ``batch`` blocks
spread over ``workers`` threads (as the RemoteMover runs jobs), then gets them all back
the same way, checks every byte, and deletes them (untimed). GB/s = 1e9 bytes of blocks
per second, from the first call to the last return; with ``repeat`` > 1 each figure is
the median over the rounds. Then, with the blocks of one more put in the store, the
latencies (median, p90, p99 over ``latency_ops`` calls, one at a time): a get of one
block, a put of one block, an ``exists`` of one key and one of ``exists_batch`` keys;
they and the bandwidths are what the twin's network model needs (a per-operation
latency and a bandwidth).

- ``fs``: a fresh temporary directory (under ``fs_dir``, default the system's), removed
  afterwards. On a local disk the gets come from the page cache: this measures the
  store's own code path, not a shared filesystem.
- ``redis``: the server at ``redis_url``, else a ``redis-server`` started on 127.0.0.1 on a
  free port (no persistence) and stopped afterwards; when neither is possible, the
  backend is skipped with the reason. Keys go under a prefix of their own, removed
  afterwards. On a server it started, the bench also runs ``redis-benchmark`` (the C
  client that comes with the server, where installed) as the reference: SET and GET of
  values of one object's size, as many clients as ``workers`` and pipelines as deep as
  ``batch``, ``blocks`` keys (``redis_benchmark.*_gbps``, and ``put_ratio`` and
  ``get_ratio``: ours over it); and one client without pipelining for the one-block
  latency (``redis_benchmark.*_one_p50_s``).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import click

from ..layout import KVLayout
from ..storage.remote import HEADER_SIZE, RemoteStore, RemoteStoreError, RemoteUnavailable
from ..storage.remote.fs import FsRemoteStore
from ..storage.remote.redis_server import LocalRedisServer
from ..storage.ssd_files import filesystem_type

BACKENDS = ("fs", "redis")
T = TypeVar("T")


class RemoteBenchError(ValueError):
    """The bench cannot run as asked."""


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": statistics.median(ordered), "p90": at(0.9), "p99": at(0.99)}


class _Round:
    """Batches of one round over worker threads; ``run`` returns the wall time."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, calls: list[Callable[[], T]]) -> tuple[float, list[T]]:
        results: list[Any] = [None] * len(calls)
        errors: list[BaseException] = []
        lock = threading.Lock()
        todo = iter(range(len(calls)))

        def work() -> None:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None or errors:
                    return
                try:
                    results[i] = calls[i]()
                except BaseException as exc:  # reported after the round
                    errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(self.workers)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        if errors:
            raise errors[0]
        return wall, results


def bench_store(
    store: RemoteStore,
    *,
    blocks: int,
    batch: int,
    workers: int,
    repeat: int,
    latency_ops: int,
    exists_batch: int,
    seed: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Bandwidth rounds and latencies of one open store (see the module docstring)."""
    import random

    import numpy as np

    stride = store.stride
    source = np.random.default_rng(seed).integers(0, 256, size=blocks * stride, dtype=np.uint8)
    target = np.zeros_like(source)
    src, dst = source.data.cast("B"), target.data.cast("B")
    rng = random.Random(seed)
    runner = _Round(workers)

    def views(mem: memoryview, ids: Sequence[int]) -> list[memoryview]:
        return [mem[i * stride : (i + 1) * stride] for i in ids]

    parts = [range(s, min(blocks, s + batch)) for s in range(0, blocks, batch)]
    rounds = []
    for r in range(repeat + 1):  # round 0 warms up (connections, directories, caches)
        keys = [rng.getrandbits(128) for _ in range(blocks)]

        def put(ids: range, keys: list[int] = keys) -> None:
            store.put([keys[i] for i in ids], views(src, ids))

        def get(ids: range, keys: list[int] = keys) -> list[bool]:
            return store.get([keys[i] for i in ids], views(dst, ids))

        put_s, _ = runner.run([functools.partial(put, ids) for ids in parts])
        get_s, found = runner.run([functools.partial(get, ids) for ids in parts])
        if not all(all(f) for f in found) or not np.array_equal(source, target):
            raise RemoteBenchError(f"{store.name}: blocks read back differ from those written")
        store.delete(keys)
        if r:
            nbytes = blocks * stride
            rounds.append({"put_gbps": nbytes / put_s / 1e9, "get_gbps": nbytes / get_s / 1e9})
            say(
                f"  round {r}: put {rounds[-1]['put_gbps']:.3f} GB/s, "
                f"get {rounds[-1]['get_gbps']:.3f} GB/s"
            )
    keys = [rng.getrandbits(128) for _ in range(blocks)]
    store.put(keys, views(src, range(blocks)))
    latency: dict[str, list[float]] = {"get_one": [], "put_one": [], "exists_one": [],
                                       "exists_batch": []}  # fmt: skip
    probe = [rng.getrandbits(128) for _ in range(latency_ops)]
    absent = [rng.getrandbits(128) for _ in range(max(0, exists_batch - blocks))]
    for n in range(latency_ops):
        i = n % blocks
        one = [keys[i]]
        t0 = time.perf_counter()
        store.get(one, views(dst, [i]))
        t1 = time.perf_counter()
        store.put([probe[n]], views(src, [i]))
        t2 = time.perf_counter()
        store.exists(one)
        t3 = time.perf_counter()
        store.exists(rng.sample(keys, min(exists_batch, blocks)) + absent)
        t4 = time.perf_counter()
        for name, secs in zip(latency, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            latency[name].append(secs)
    store.delete(keys + probe)
    return {
        "put_gbps": statistics.median(r["put_gbps"] for r in rounds),
        "get_gbps": statistics.median(r["get_gbps"] for r in rounds),
        "rounds": rounds,
        "latency_s": {name: _percentiles(v) for name, v in latency.items()},
    }


def redis_benchmark(
    server: LocalRedisServer,
    value_bytes: int,
    *,
    clients: int,
    pipeline: int,
    keys: int,
    requests: int,
    latency_requests: int,
) -> dict[str, Any] | None:
    """``redis-benchmark`` SET and GET figures on ``server`` (see the module docstring);
    None when it is not installed."""
    exe = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if exe is None:
        return None

    def run(c: int, p: int, n: int) -> dict[str, dict[str, str]]:
        args = [
            exe, "-h", "127.0.0.1", "-p", str(server.port), "-t", "set,get", "-n", str(n),
            "-c", str(c), "-P", str(p), "-d", str(value_bytes), "-r", str(keys), "--csv",
        ]  # fmt: skip
        if server.password is not None:
            args += ["-a", server.password]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
        rows = {row["test"]: row for row in csv.DictReader(io.StringIO(proc.stdout))}
        if proc.returncode or not {"SET", "GET"} <= set(rows):
            raise RemoteBenchError(f"redis-benchmark failed: {proc.stderr.strip()[-300:]}")
        return rows

    bandwidth = run(clients, pipeline, max(requests, clients * pipeline))
    latency = run(1, 1, latency_requests)
    return {
        "binary": exe,
        "clients": clients,
        "pipeline": pipeline,
        "set_gbps": float(bandwidth["SET"]["rps"]) * value_bytes / 1e9,
        "get_gbps": float(bandwidth["GET"]["rps"]) * value_bytes / 1e9,
        "set_one_p50_s": float(latency["SET"]["p50_latency_ms"]) / 1e3,
        "get_one_p50_s": float(latency["GET"]["p50_latency_ms"]) / 1e3,
    }


@contextmanager
def _open(
    backend: str,
    stride: int,
    fs_dir: str | None,
    redis_url: str | None,
    redis_password: str | None,
    info: dict[str, Any],
) -> Iterator[tuple[RemoteStore | None, LocalRedisServer | None]]:
    """The store to bench, or None (``info["skipped"]`` says why), and the redis server
    the bench started, if any."""
    with ExitStack() as stack:
        if backend == "fs":
            path = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="flexkv-bench-", dir=fs_dir)
            )
            info.update(dir=path, filesystem=filesystem_type(path))
            store: RemoteStore = FsRemoteStore(path, stride, key_prefix="bench:")
            stack.callback(store.close)
            yield store, None
            return
        try:
            from ..storage.remote.redis_store import RedisRemoteStore
        except ImportError as exc:
            info["skipped"] = f"the redis package is not installed ({exc})"
            yield None, None
            return
        server = None
        if redis_url is None:
            from ..storage.remote import redis_server

            if redis_server.redis_server_binary() is None:
                info["skipped"] = "redis-server is not installed and no --redis-url was given"
                yield None, None
                return
            server = stack.enter_context(LocalRedisServer(password=redis_password))
            redis_url = server.url
            info["server"] = f"started on 127.0.0.1:{server.port} ({server.binary})"
        redis_store = RedisRemoteStore(
            redis_url, stride, key_prefix=f"flexkv-bench-{os.getpid()}:", password=redis_password
        )
        stack.callback(redis_store.close)
        stack.callback(redis_store.clear)
        info.update(url=redis_url, redis_version=redis_store.server_version())
        yield redis_store, server


def run_remote_bench(
    *,
    backends: Sequence[str] = BACKENDS,
    layout: KVLayout,
    blocks: int = 128,
    batch: int = 16,
    workers: int = 2,
    repeat: int = 3,
    latency_ops: int = 200,
    exists_batch: int = 64,
    fs_dir: str | None = None,
    redis_url: str | None = None,
    redis_password: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bench on each backend and return its figures (see the module docstring)."""
    say = progress or (lambda _msg: None)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise RemoteBenchError(
            f"unknown backend {unknown[0]!r}; choose from: {', '.join(BACKENDS)}"
        )
    if min(blocks, batch, workers, repeat, latency_ops, exists_batch) < 1:
        raise RemoteBenchError("blocks, batch, workers, repeat and the latency counts must be >= 1")
    stride = layout.stride
    result: dict[str, Any] = {
        "layout": {
            "num_layers": layout.num_layers,
            "num_kv_heads": layout.num_kv_heads,
            "head_size": layout.head_size,
            "tokens_per_block": layout.tokens_per_block,
            "dtype": layout.dtype,
            "block_bytes": layout.block_bytes,
            "stride": stride,
        },
        "object_bytes": HEADER_SIZE + stride,
        "blocks": blocks,
        "bytes_per_round": blocks * stride,
        "batch": batch,
        "workers": workers,
        "repeat": repeat,
        "latency_ops": latency_ops,
        "exists_batch": exists_batch,
        "cpus": os.cpu_count(),
        "backends": {},
    }
    for backend in backends:
        info: dict[str, Any] = {}
        result["backends"][backend] = info
        say(f"{backend}: {blocks} blocks of {stride} B, batches of {batch}, {workers} workers")
        with _open(backend, stride, fs_dir, redis_url, redis_password, info) as (store, server):
            if store is None:
                say(f"  skipped: {info['skipped']}")
                continue
            info.update(
                bench_store(
                    store,
                    blocks=blocks,
                    batch=batch,
                    workers=workers,
                    repeat=repeat,
                    latency_ops=latency_ops,
                    exists_batch=exists_batch,
                    seed=seed,
                    say=say,
                )
            )
            if server is not None:
                say("  redis-benchmark on the same server")
                ref = redis_benchmark(
                    server,
                    HEADER_SIZE + stride,
                    clients=workers,
                    pipeline=batch,
                    keys=blocks,
                    requests=blocks * repeat,
                    latency_requests=latency_ops,
                )
                info["redis_benchmark"] = ref
                if ref is not None:
                    info["put_ratio"] = info["put_gbps"] / ref["set_gbps"]
                    info["get_ratio"] = info["get_gbps"] / ref["get_gbps"]
    return result


def _print(r: dict[str, Any]) -> None:
    lay = r["layout"]
    click.echo(
        f"objects of {r['object_bytes']} B (one {lay['tokens_per_block']}-token block of "
        f"{lay['num_layers']} layers x {lay['num_kv_heads']} KV heads x {lay['head_size']}, "
        f"{lay['dtype']}), {r['blocks']} blocks per round in batches of {r['batch']}, "
        f"{r['workers']} workers, median of {r['repeat']}"
    )
    for backend, b in r["backends"].items():
        if "skipped" in b:
            click.echo(f"  {backend:5}: skipped: {b['skipped']}")
            continue
        where = b.get("dir") or b.get("url")
        click.echo(
            f"  {backend:5}: put {b['put_gbps']:.3f} GB/s, get {b['get_gbps']:.3f} GB/s  ({where})"
        )
        ref = b.get("redis_benchmark")
        if ref:
            click.echo(
                f"         redis-benchmark SET {ref['set_gbps']:.3f} GB/s, GET "
                f"{ref['get_gbps']:.3f} GB/s (ratio put {b['put_ratio']:.3f}, get "
                f"{b['get_ratio']:.3f}); one client: SET p50 {ref['set_one_p50_s'] * 1e6:.0f} us, "
                f"GET p50 {ref['get_one_p50_s'] * 1e6:.0f} us"
            )
        for name, label in (
            ("get_one", "get 1 block"),
            ("put_one", "put 1 block"),
            ("exists_one", "exists 1 key"),
            ("exists_batch", f"exists {r['exists_batch']} keys"),
        ):
            us = {q: f"{v * 1e6:8.1f} us" for q, v in b["latency_s"][name].items()}
            click.echo(f"         {label:15} p50 {us['p50']}  p90 {us['p90']}  p99 {us['p99']}")


@click.command("remote")
@click.option(
    "--backend",
    "backends",
    type=click.Choice(BACKENDS),
    multiple=True,
    help="Backend to bench (repeat for several) [default: all].",
)
@click.option("--model", default="llama-3-8b", show_default=True, help="Layout of one block.")
@click.option("--tokens-per-block", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--blocks", type=click.IntRange(min=1), default=128, show_default=True, help="Per round."
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Blocks per call."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Threads."
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Rounds; each figure is the median over them.",
)
@click.option("--latency-ops", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--exists-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Keys of the batched exists whose latency is measured.",
)
@click.option(
    "--dir", "fs_dir", default=None, help="Where the fs store's temporary directory goes."
)
@click.option(
    "--redis-url", default=None, help="A server to use [default: start redis-server on loopback]."
)
@click.option("--redis-password", default=None, envvar="FLEXKV_REMOTE_PASSWORD")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON only.")
@click.option("--out", "out", default=None, help="Also write the figures to this JSON file.")
def remote_command(
    backends: tuple[str, ...],
    model: str,
    tokens_per_block: int,
    blocks: int,
    batch: int,
    workers: int,
    repeat: int,
    latency_ops: int,
    exists_batch: int,
    fs_dir: str | None,
    redis_url: str | None,
    redis_password: str | None,
    seed: int,
    as_json: bool,
    out: str | None,
) -> None:
    """Remote stores on this machine: put and get GB/s (1e9 B/s) and round-trip latency
    of one-block gets and batched exists, for the fs store (a temporary directory) and
    redis (a redis-server started on 127.0.0.1 unless --redis-url is given)."""
    import json

    from ..config import catalog

    try:
        layout = KVLayout.from_model(catalog.model_config(model), tokens_per_block)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--model") from None
    try:
        r = run_remote_bench(
            backends=backends or BACKENDS,
            layout=layout,
            blocks=blocks,
            batch=batch,
            workers=workers,
            repeat=repeat,
            latency_ops=latency_ops,
            exists_batch=exists_batch,
            fs_dir=fs_dir,
            redis_url=redis_url,
            redis_password=redis_password,
            seed=seed,
            progress=lambda msg: click.echo(msg, err=True),
        )
    except (RemoteBenchError, RemoteStoreError, RemoteUnavailable) as exc:
        raise click.UsageError(str(exc)) from None
    text = json.dumps(r, indent=2)
    if out is not None:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if as_json:
        click.echo(text)
    else:
        _print(r)


__all__ = ["BACKENDS", "RemoteBenchError", "bench_store", "remote_command", "run_remote_bench"]
