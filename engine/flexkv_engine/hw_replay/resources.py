"""Before a hardware replay allocates anything: does every tier fit this machine?

The host pool is pinned (or, without a GPU, plain) memory of ``num_cpu_blocks`` strides;
on a machine without a GPU the emulated GPU cache is host memory too. A config that asks
for more than the machine has would be killed by the kernel's OOM killer part-way, so the
replay refuses it first, with the sizes and the key to change (a ``ConfigError``: exit
status 2). The SSD tier must fit the free space of its first directory's file system.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..config import Config, ConfigError
from ..layout import KVLayout

GIB = 1 << 30
#: Memory left to everything else (the interpreter, torch, the page cache's minimum).
HEADROOM_BYTES = 1 * GIB


def available_memory() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where the kernel has none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _free_disk(directory: str) -> int | None:
    path = Path(directory).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_resources(config: Config, device: str, gpu_blocks: int, longest_blocks: int = 0,
                    memory: int | None = None) -> None:
    """Raise ConfigError when the tiers of ``config`` do not fit this machine.

    ``gpu_blocks``: the emulated GPU cache's blocks (host memory without a GPU, where
    the copies also keep a staging buffer per direction as large as the longest prompt,
    ``longest_blocks``); ``memory``: available bytes (default: the kernel's
    ``MemAvailable``)."""
    cache = config.cache_config
    assert cache.tokens_per_block is not None and cache.num_cpu_blocks is not None
    layout = KVLayout.from_model(config.model_config, cache.tokens_per_block)
    host = cache.num_cpu_blocks * layout.stride
    emulated = 0 if device.startswith("cuda") else (gpu_blocks + 2 * longest_blocks)
    on_host = host + emulated * layout.block_bytes
    memory = available_memory() if memory is None else memory
    if memory is not None and on_host + HEADROOM_BYTES > memory:
        gpu = "" if device.startswith("cuda") else (
            f" and the emulated GPU cache with its copy buffers {emulated:,} blocks = "
            f"{emulated * layout.block_bytes / GIB:.1f} GiB")
        most = max((memory - HEADROOM_BYTES - (on_host - host)) // layout.stride, 0)
        hint = (f"at most about {most:,} blocks fit here (or cpu_cache_gb, or a smaller "
                "model_config)") if most else (
                "the emulated GPU cache alone does not fit: a smaller model_config (its "
                "blocks hold the longest prompt four times over) or a GPU (--device cuda)")
        raise ConfigError(
            f"the CPU tier needs {cache.num_cpu_blocks:,} blocks x {layout.stride / 2**20:.2f}"
            f" MiB = {host / GIB:.1f} GiB{gpu}, but this machine has "
            f"{memory / GIB:.1f} GiB of memory available (1 GiB kept free)",
            key_path="cache_config.num_cpu_blocks" if most else "model_config",
            source=config.source,
            hint=hint,
        )
    if cache.enable_ssd and cache.num_ssd_blocks:
        need = cache.num_ssd_blocks * layout.stride
        first = os.fspath(cache.ssd_cache_dir[0])
        free = _free_disk(first)
        if free is not None and need > free:
            raise ConfigError(
                f"the SSD tier needs {cache.num_ssd_blocks:,} blocks = {need / GIB:.1f} GiB, "
                f"but {first} has {free / GIB:.1f} GiB free",
                key_path="cache_config.num_ssd_blocks",
                source=config.source,
                hint=f"at most {free // layout.stride:,} blocks fit there (or ssd_cache_gb, "
                "or another ssd_cache_dir)",
            )
