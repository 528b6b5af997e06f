"""The SSD tier survives a restart: its index is rebuilt from the slot table, a killed
process loses at most the blocks it was writing, and a trace replayed across a SIGKILL
hits the SSD as often as an uninterrupted replay."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from flexkv_engine.hw_replay.run import RUN_COLUMNS, run_replay  # noqa: E402
from flexkv_engine.replay_input import ReplayInput, prepare_replay  # noqa: E402
from flexkv_sim.workloads import generate, write_trace  # noqa: E402

from .ssd_engine import (  # noqa: E402
    BACKENDS,
    assert_idle,
    config_overrides,
    disk_root,
    get,
    loaded_exactly,
    open_kv,
    put,
    untouched,
)

ENGINE_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def root() -> Iterator[Path]:
    yield from disk_root()


def chains(count: int, length: int, base: int) -> list[list[int]]:
    """``count`` sequences of ``length`` blocks sharing their first two blocks."""
    return [[base, base + 1] + [base + 1000 * (c + 1) + i for i in range(length - 2)]
            for c in range(count)]  # fmt: skip


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ENGINE_ROOT,
    )


def kill_when(proc: subprocess.Popen[str], word: str) -> list[str]:
    """Read the child's lines until ``word``, then SIGKILL it; returns the lines."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == word:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert lines and lines[-1] == word, f"child ended early: {lines} {stderr}"
    assert proc.returncode == -signal.SIGKILL
    return lines


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reopened_cache_hits_what_it_stored(root: Path, backend: str) -> None:
    dirs = [root / "a", root / "b"]
    stored = chains(3, 6, 100)
    with open_kv(dirs, backend, cpu=8) as kv:
        for keys in stored:
            assert put(kv, keys, range(6)).status == "done"
    with open_kv(dirs, backend, cpu=8) as kv:
        assert kv.stats()["ssd"]["restored_blocks"] == 2 + 3 * 4
        for n, keys in enumerate(stored):  # the shared blocks are staged in CPU once
            result = get(kv, keys, range(10, 16))
            assert result.status == "done" and result.loaded_blocks == 6
            assert result.hit_blocks["ssd"] == (6 if n == 0 else 4)
            assert loaded_exactly(kv, keys, range(10, 16), 6)
        assert_idle(kv)
    # ssd_restore=false starts empty and forgets the stored blocks for good.
    with open_kv(dirs, backend, cpu=8, extra=["cache_config.ssd_restore=false"]) as kv:
        assert kv.stats()["ssd"]["restored_blocks"] == 0
        result = get(kv, stored[0], range(10, 16))
        assert result.loaded_blocks == 0 and untouched(kv, range(10, 16))
    with open_kv(dirs, backend, cpu=8) as kv:
        assert kv.stats()["ssd"]["restored_blocks"] == 0


WRITER = r"""
import json, sys, time
from flexkv_engine.config import load_config
from flexkv_engine.hw_replay.pattern import fill_slot
from flexkv_engine.kv_manager import KVManager

overrides, backend, waited, streamed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
cfg = load_config(None, env={}, overrides=json.loads(overrides)).resolve()
kv = KVManager(cfg, num_gpu_blocks=128, ssd_backend=backend)
def start(keys, slots):
    for slot, key in zip(slots, keys):
        fill_slot(kv.gpu.kv, kv.layout, slot, key)
    return kv.put_async(keys, slots)
for keys in json.loads(waited):
    rid = start(keys, list(range(len(keys))))
    assert kv.wait([rid])[rid].status == "done"
print("stored", flush=True)
first = 32
for keys in json.loads(streamed):  # not waited for: each PUT has slots of its own
    start(keys, list(range(first, first + len(keys))))
    first += len(keys)
print("writing", flush=True)
time.sleep(60)
"""


@pytest.mark.faults
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_writer_loses_at_most_the_blocks_in_flight(root: Path, backend: str) -> None:
    dirs = [root / "a"]
    waited = chains(4, 8, 100)
    streamed = chains(6, 12, 500)  # written while the process is killed
    args = config_overrides(dirs, backend, cpu=64, ssd=256)
    proc = spawn(WRITER, json.dumps(args), backend, json.dumps(waited), json.dumps(streamed))
    kill_when(proc, "writing")
    with open_kv(dirs, backend, cpu=64, ssd=256) as kv:
        restored = kv.stats()["ssd"]["restored_blocks"]
        assert restored >= 2 + 4 * 6
        for keys in waited:  # completed before the kill: all there, exactly
            result = get(kv, keys, range(8))
            assert result.loaded_blocks == 8 and result.hit_blocks["ssd"] >= 6
            assert loaded_exactly(kv, keys, range(8), 8)
        for keys in streamed:  # in flight: whatever came back is exact
            result = get(kv, keys, range(12))
            n = result.loaded_blocks
            assert result.status == "done" and loaded_exactly(kv, keys, range(12), n)
            assert untouched(kv, list(range(n, 12)))
        assert kv.stats()["ssd_errors"] == 0  # no record outlived its bytes
        assert_idle(kv)


# -- a trace replayed across a SIGKILL -------------------------------------------------------

HALF = r"""
import dataclasses, json, sys, time
from flexkv_engine.hw_replay.pattern import fill_slot
from flexkv_engine.hw_replay.serving import ServingEmulator
from flexkv_engine.kv_manager import KVManager
from flexkv_engine.replay_input import prepare_replay

trace, half, backend, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
inp = prepare_replay(trace, overrides=json.loads(overrides))
requests = inp.requests[:half]
longest = max(len(r.keys) for r in inp.requests)
# As run_replay does at --speed max: one request at a time, trace time as `now`.
kv = KVManager(inp.config, num_gpu_blocks=longest, ssd_backend=backend)
serving = ServingEmulator(kv, 0, longest, inp.config.serving_config.compute,
                          emulate_compute=False)
for req in requests[:-1]:
    serving.serve(req, time.perf_counter())
last = requests[-1]
slots = list(range(len(last.keys)))
rid = kv.get_async(last.keys, slots, num_tokens=last.num_tokens, now=last.t)
loaded = kv.wait([rid])[rid].loaded_blocks
for i in range(loaded, len(slots)):
    fill_slot(kv.gpu.kv, kv.layout, slots[i], last.keys[i])
kv.put_async(last.keys, slots, num_tokens=last.num_tokens, now=last.t)  # not waited for
print("killme", flush=True)
time.sleep(60)
"""
# 1 KiB blocks (4 KiB on disk) keep the three replays fast; the CPU tier is small, so the
# SSD serves most hits.
TRACE_CONFIG = [
    "model_config.num_layers=1",
    "model_config.num_kv_heads=1",
    "model_config.head_size=16",
    "model_config.dtype=float16",
    "cache_config.num_cpu_blocks=150",
    "cache_config.num_ssd_blocks=40000",
    "cache_config.ssd_restore=true",  # a replay starts empty unless asked
]


def _ssd_rate(records: list[tuple], ids: set[str]) -> tuple[float, float]:
    """(SSD, CPU + SSD) hit rate of the GETs among ``records`` whose id is in ``ids``."""
    tokens = ssd = cpu = 0
    for row in records:
        if row[0] in ids and row[RUN_COLUMNS.index("op")] == "get":
            tokens += row[RUN_COLUMNS.index("num_tokens")]
            ssd += row[RUN_COLUMNS.index("ssd_tokens")]
            cpu += row[RUN_COLUMNS.index("cpu_tokens")]
    return ssd / tokens, (cpu + ssd) / tokens


@pytest.mark.faults
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trace_replayed_across_a_kill_hits_the_ssd_as_an_uninterrupted_one(
    root: Path, backend: str
) -> None:
    trace = root / "chat.jsonl"
    header, records = generate("multiturn", requests=200, seed=5, rate=8.0)
    write_trace(trace, header, records)

    def prepared(name: str) -> tuple[list[str], ReplayInput]:
        args = [
            *TRACE_CONFIG,
            f"cache_config.ssd_cache_dir={root / name}",
            f"cache_config.ssd_cache_iouring_entries={0 if backend == 'threads' else 16}",
        ]
        return args, prepare_replay(trace, overrides=args)

    _, whole = prepared("whole")
    half = len(whole.requests) // 2
    second = {r.request_id for r in whole.requests[half:]}
    uninterrupted = run_replay(whole, ssd_backend=backend)
    assert uninterrupted.summary["integrity_failures"] == 0

    args, restarted = prepared("killed")
    kill_when(spawn(HALF, str(trace), str(half), backend, json.dumps(args)), "killme")
    rest = dataclasses.replace(restarted, requests=restarted.requests[half:])
    after = run_replay(rest, ssd_backend=backend)
    assert after.summary["integrity_failures"] == 0 and after.summary["failed_ops"] == 0

    _, cold = prepared("cold")
    fresh = run_replay(
        dataclasses.replace(cold, requests=cold.requests[half:]), ssd_backend=backend
    )
    ssd_whole, both_whole = _ssd_rate(uninterrupted.records, second)
    ssd_after, both_after = _ssd_rate(after.records, second)
    ssd_cold, _ = _ssd_rate(fresh.records, second)
    assert abs(ssd_after - ssd_whole) <= 0.01, (ssd_after, ssd_whole)
    assert abs(both_after - both_whole) <= 0.01, (both_after, both_whole)
    assert ssd_after - ssd_cold > 0.05, (ssd_after, ssd_cold)  # the restore did the work
    assert os.path.exists(root / "killed" / "slots.bin")
