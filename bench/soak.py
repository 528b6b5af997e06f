"""Soak: several threads of GET/PUT against a CPU + SSD KV manager for a set time.

Each thread plays multi-turn conversations that share system prompts: GET the
conversation's blocks into its own GPU slots, check every loaded block byte for byte
(blocks hold bytes derived from their keys), fill the missed ones, PUT, next turn. Now
and then a thread prefetches instead, or cancels its GET at once. Both tiers fill up
and evict, so SSD slots are reused all along. ``--fault-interval S`` also injects an
I/O error (alternately into a read and a write) every S seconds.

At the end, with nothing in flight, the block accounting of every tier is checked
(``TierIndex.check``: used + free = capacity, each id held once; no lock, pin or
unfinished write left), then the manager is closed and reopened to time the restore of
the SSD index. Memory: RSS sampled every few seconds; the report compares the mean of
the first and of the last minute. Prints a JSON report; progress goes to stderr.

    python bench/soak.py [--seconds 600] [--threads 4] [--ssd-dir /var/tmp/flexkv-soak]
                         [--backend auto|io_uring|threads] [--fault-interval 0]
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import platform
import random
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexkv_engine.config import load_config
from flexkv_engine.core.paths import SSD_READ
from flexkv_engine.hw_replay.pattern import fill_slot, slot_matches
from flexkv_engine.kv_manager import KVManager
from flexkv_engine.storage import SsdFault

LAYOUT = [  # 64 KiB per 16-token block, as bench/calibration.py
    "model_config.num_layers=4",
    "model_config.num_kv_heads=4",
    "model_config.head_size=64",
    "model_config.dtype=float16",
    "cache_config.tokens_per_block=16",
]
SYSTEM_PROMPTS = 8
SYSTEM_BLOCKS = 24
TURN_BLOCKS = (2, 12)
MAX_BLOCKS = 96  # a conversation starts over beyond this


def key(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


@dataclass
class Conversation:
    """Block keys of one conversation: its system prompt's, then its own turns'."""

    system: int
    ident: int
    length: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> list[int]:
        sys_keys = [key(0, self.system, i) for i in range(min(self.length, SYSTEM_BLOCKS))]
        return sys_keys + [key(1, self.ident, i) for i in range(SYSTEM_BLOCKS, self.length)]


@dataclass
class Tally:
    gets: int = 0
    puts: int = 0
    prefetches: int = 0
    cancels: int = 0
    blocks_loaded: int = 0
    blocks_checked: int = 0
    bad_blocks: int = 0
    failed: int = 0


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(
    kv: KVManager,
    index: int,
    convs: list[Conversation],
    ids: Any,
    stop: threading.Event,
    tally: Tally,
    seed: int,
) -> None:
    rng = random.Random(seed)
    slots = list(range(index * MAX_BLOCKS, (index + 1) * MAX_BLOCKS))
    gpu, layout = kv.gpu.kv, kv.layout
    while not stop.is_set():
        conv = rng.choice(convs)
        with conv.lock:  # one turn at a time per conversation
            keys = conv.keys()
            roll = rng.random()
            if roll < 0.05:
                rid = kv.prefetch_async(keys)
                kv.wait([rid])
                tally.prefetches += 1
                continue
            rid = kv.get_async(keys, slots)
            if roll < 0.10:
                kv.cancel(rid)
                tally.cancels += 1
            result = kv.wait([rid])[rid]
            tally.gets += 1
            tally.failed += result.status == "failed"
            n = result.loaded_blocks
            tally.blocks_loaded += n
            for i in range(n):
                tally.blocks_checked += 1
                if not slot_matches(gpu, layout, slots[i], keys[i]):
                    tally.bad_blocks += 1
            for i in range(n, len(keys)):
                fill_slot(gpu, layout, slots[i], keys[i])
            rid = kv.put_async(keys, slots)
            tally.failed += kv.wait([rid])[rid].status == "failed"
            tally.puts += 1
            conv.length += rng.randint(*TURN_BLOCKS)
            if conv.length > MAX_BLOCKS:  # a new conversation in its place
                conv.ident, conv.length = next(ids), SYSTEM_BLOCKS + rng.randint(*TURN_BLOCKS)
                conv.system = rng.randrange(SYSTEM_PROMPTS)


def check_idle(kv: KVManager) -> dict[str, Any]:
    """Nothing in flight, no lock left, every tier's accounting right; tier figures."""
    out: dict[str, Any] = {}
    with kv._lock:
        assert not kv._jobs, f"{len(kv._jobs)} ops still in flight"
        assert not kv._requests, f"{len(kv._requests)} results never collected"
        for name, tier in kv.planner.tiers.items():
            tier.check()
            assert tier.root.lock == 0, f"{name}: {tier.root.lock} locks left"
            assert all(n.ready and n.lock == 0 for n in tier.nodes()), f"{name}: busy node"
            assert tier.used + tier.free == tier.capacity
            out[name] = {
                "used": tier.used,
                "free": tier.free,
                "capacity": tier.capacity,
                "nodes": tier.num_nodes,
                "evicted_blocks": tier.evicted_blocks,
                "dropped_blocks": tier.dropped_blocks,
            }
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--cpu-blocks", type=int, default=512)
    parser.add_argument("--ssd-blocks", type=int, default=8192)
    parser.add_argument("--queue-depth", type=int, default=32)
    parser.add_argument("--ssd-dir", default="/var/tmp/flexkv-soak")
    parser.add_argument("--backend", default="auto", choices=["auto", "io_uring", "threads"])
    parser.add_argument("--fault-interval", type=float, default=0.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def soak(
    kv: KVManager, args: argparse.Namespace
) -> tuple[float, list[Tally], list[tuple[float, int]], int]:
    """Run the threads for ``args.seconds``: (wall time, tallies, RSS samples, faults)."""
    rng = random.Random(args.seed)
    ids = iter(range(10**9))
    convs = [
        Conversation(rng.randrange(SYSTEM_PROMPTS), next(ids), SYSTEM_BLOCKS + rng.randint(2, 12))
        for _ in range(args.conversations)
    ]
    stop = threading.Event()
    tallies = [Tally() for _ in range(args.threads)]
    threads = [
        threading.Thread(
            target=worker, args=(kv, i, convs, ids, stop, tallies[i], args.seed * 1000 + i)
        )
        for i in range(args.threads)
    ]
    samples: list[tuple[float, int]] = []
    faults = 0
    began = time.monotonic()
    for t in threads:
        t.start()
    next_sample = next_fault = next_report = began
    while (now := time.monotonic()) < began + args.seconds:
        if now >= next_sample:
            samples.append((now - began, rss_bytes()))
            next_sample += args.sample_every
        if args.fault_interval > 0 and now >= next_fault + args.fault_interval:
            fault = SsdFault("read" if faults % 2 == 0 else "write", errno.EIO)
            kv._movers[SSD_READ].backend.inject_fault(fault)  # type: ignore[attr-defined]
            faults += 1
            next_fault = now
        if now >= next_report + 60:
            next_report = now
            gets = sum(t.gets for t in tallies)
            rss = samples[-1][1] / 2**20
            print(f"{now - began:5.0f} s: {gets} GETs, RSS {rss:.0f} MiB", file=sys.stderr)
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    samples.append((wall, rss_bytes()))
    return wall, tallies, samples, faults


def main() -> None:
    args = parse_args()
    ssd_dir = Path(args.ssd_dir)
    shutil.rmtree(ssd_dir, ignore_errors=True)
    overrides = [
        *LAYOUT,
        f"cache_config.num_cpu_blocks={args.cpu_blocks}",
        f"cache_config.num_ssd_blocks={args.ssd_blocks}",
        f"cache_config.ssd_cache_dir={ssd_dir}",
        f"cache_config.ssd_cache_iouring_entries={args.queue_depth}",
    ]
    cfg = load_config(None, env={}, overrides=overrides).resolve()
    kv = KVManager(cfg, num_gpu_blocks=args.threads * MAX_BLOCKS, ssd_backend=args.backend)
    wall, tallies, samples, faults = soak(kv, args)
    tiers = check_idle(kv)
    stats = kv.stats()
    kv.close()

    restart = time.perf_counter()
    again = KVManager(cfg, num_gpu_blocks=1, ssd_backend=args.backend)
    restore_s = time.perf_counter() - restart
    restored = again.stats()["ssd"]["restored_blocks"]
    check_idle(again)
    again.close()
    shutil.rmtree(ssd_dir, ignore_errors=True)

    first = [r for t, r in samples if t <= 60]
    last = [r for t, r in samples if t >= wall - 60]
    total = Tally(**{f: sum(getattr(t, f) for t in tallies) for f in Tally.__dataclass_fields__})
    mib: dict[str, Any] = {
        "first_minute_mean": round(statistics.mean(first) / 2**20, 1),
        "last_minute_mean": round(statistics.mean(last) / 2**20, 1),
        "max": round(max(r for _, r in samples) / 2**20, 1),
        "samples": len(samples),
    }
    mib["growth"] = round(mib["last_minute_mean"] - mib["first_minute_mean"], 1)
    minutes: dict[int, list[int]] = {}
    for t, r in samples:
        minutes.setdefault(int(t // 60), []).append(r)
    mib["by_minute"] = [round(statistics.mean(v) / 2**20, 1) for _, v in sorted(minutes.items())]
    report = {
        "seconds": round(wall, 1),
        "threads": args.threads,
        "backend": kv.ssd_backend_name,
        "machine": platform.machine(),
        "requests": vars(total),
        "gets_per_s": round(total.gets / wall, 1),
        "hit_rate_by_tier": stats["hit_rate_by_tier"],
        "hit_rate": stats["hit_rate"],
        "faults_injected": faults,
        "ssd_errors": stats["ssd_errors"],
        "ssd": stats["ssd"],
        "tiers": tiers,
        "accounting": "ok",
        "rss_mib": mib,
        "restart": {"restore_s": round(restore_s, 3), "restored_blocks": restored},
    }
    print(json.dumps(report, indent=1))
    if total.bad_blocks:
        sys.exit(f"{total.bad_blocks} loaded blocks did not match their bytes")


if __name__ == "__main__":
    main()
