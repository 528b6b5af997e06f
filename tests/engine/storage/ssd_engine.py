"""A KV manager with an SSD tier on a real disk, for the fault, integrity, restart and
namespace tests of this folder. Blocks hold bytes derived from their keys
(``hw_replay.pattern``), so every loaded block is checked exactly."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from flexkv_engine.config import load_config
from flexkv_engine.core.paths import SSD_READ
from flexkv_engine.hw_replay.pattern import fill_slot, slot_matches
from flexkv_engine.kv_manager import KVManager, KVResult
from flexkv_engine.storage import SsdFault, filesystem_type

BACKENDS = [pytest.param("io_uring", marks=pytest.mark.io_uring), "threads"]
# 2 layers x 2 KV heads x 64, fp16, 16 tokens: 16 KiB blocks (four pages per I/O).
LAYOUT = [
    "model_config.num_layers=2",
    "model_config.num_kv_heads=2",
    "model_config.head_size=64",
    "model_config.dtype=float16",
    "cache_config.tokens_per_block=16",
]


def disk_root() -> Iterator[Path]:
    """A fresh directory on a disk filesystem (O_DIRECT), removed afterwards."""
    base = Path("/var/tmp")
    if filesystem_type(base) in (None, "tmpfs"):
        base = Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="flexkv-test-", dir=base))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def config_overrides(
    dirs: Sequence[Path], backend: str, *, cpu: int = 16, ssd: int = 64, extra: Sequence[str] = ()
) -> list[str]:
    queue = 8 if backend != "threads" else 0
    return [
        *LAYOUT,
        f"cache_config.num_cpu_blocks={cpu}",
        f"cache_config.num_ssd_blocks={ssd}",
        f"cache_config.ssd_cache_dir={';'.join(str(d) for d in dirs)}",
        f"cache_config.ssd_cache_iouring_entries={queue}",
        *extra,
    ]


def open_kv(
    dirs: Sequence[Path],
    backend: str,
    *,
    cpu: int = 16,
    ssd: int = 64,
    gpu: int = 48,
    extra: Sequence[str] = (),
    metrics: Any = None,
) -> KVManager:
    overrides = config_overrides(dirs, backend, cpu=cpu, ssd=ssd, extra=extra)
    cfg = load_config(None, env={}, overrides=overrides).resolve()
    kv = KVManager(cfg, num_gpu_blocks=gpu, ssd_backend=backend, metrics=metrics)
    assert kv.ssd_backend_name == backend
    return kv


def put(kv: KVManager, keys: list[int], slots: Sequence[int]) -> KVResult:
    """Fill the GPU slots with the blocks of ``keys`` and PUT them."""
    for slot, key in zip(slots, keys, strict=False):
        fill_slot(kv.gpu.kv, kv.layout, slot, key)
    rid = kv.put_async(keys, slots)
    return kv.wait([rid], timeout=60)[rid]


def get(kv: KVManager, keys: list[int], slots: Sequence[int]) -> KVResult:
    """GET into GPU slots poisoned first, so that an unwritten byte fails a check."""
    kv.gpu.kv[:, :, list(slots)] = float("nan")
    rid = kv.get_async(keys, slots)
    return kv.wait([rid], timeout=60)[rid]


def loaded_exactly(kv: KVManager, keys: list[int], slots: Sequence[int], n: int) -> bool:
    return all(slot_matches(kv.gpu.kv, kv.layout, slots[i], keys[i]) for i in range(n))


def untouched(kv: KVManager, slots: Sequence[int]) -> bool:
    """The slots still hold the poison of :func:`get` (NaN everywhere)."""
    return bool(kv.gpu.kv[:, :, list(slots)].isnan().all())


def drop_cpu(kv: KVManager) -> None:
    """Empty the CPU tier (nothing in flight), so that GETs go to the SSD."""
    with kv._lock:
        cpu = kv.planner.tiers["cpu"]
        cpu.evict(cpu.capacity)
        assert cpu.used == 0


def inject(kv: KVManager, fault: SsdFault | None) -> None:
    kv._movers[SSD_READ].backend.inject_fault(fault)  # type: ignore[attr-defined]


def assert_idle(kv: KVManager) -> None:
    """Nothing in flight, no lock or pin left, and every tier's accounting adds up."""
    with kv._lock:
        assert not kv._jobs
        for tier in kv.planner.tiers.values():
            tier.check()
            assert tier.root.lock == 0, tier.name
            assert all(node.ready and node.lock == 0 for node in tier.nodes()), tier.name
            assert tier.used + tier.free == tier.capacity
