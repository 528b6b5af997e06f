"""The movers behind a :class:`~flexkv_engine.kv_manager.KVManager`'s paths, built from a
resolved config: GPU <-> host copies (the native CUDA mover or torch), the SSD tier (its
files, slot table, restore and I/O backend) and the remote store."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from .core.planner import Planner
from .planning import ssd_max_file_size
from .storage.host_pool import GpuKVCache, HostPool
from .transfer.protocol import Mover
from .transfer.torch_copy import TorchCopyMover

log = logging.getLogger("flexkv_engine")


def gpu_mover(
    cache: Any, device: str, cuda_kernels: bool | None, host: HostPool, gpu: GpuKVCache
) -> Mover:
    """H2D and D2H: the native CUDA mover where asked for or available, else torch."""
    if cuda_kernels is not False and device.startswith("cuda"):
        from .transfer.cuda_copy import CudaCopyMover, cuda_mover_unavailable

        why = cuda_mover_unavailable(device)
        if why is None:
            return CudaCopyMover.from_config(cache, host, gpu)
        if cuda_kernels:
            raise RuntimeError(f"CUDA mover unavailable: {why}")
        log.warning("GPU copies through torch: %s", why)
    elif cuda_kernels:
        raise ValueError(f"cuda_kernels=True needs a CUDA device, got {device!r}")
    return TorchCopyMover(host, gpu)


@dataclass
class SsdTier:
    files: Any  # storage.ssd_files.SsdFiles
    mover: Mover
    backend_name: str  # "io_uring" or "threads"
    restored_blocks: int


def open_ssd(
    cache: Any, host: HostPool, planner: Planner, backend: str, restore: bool
) -> SsdTier:
    """Create or reopen the SSD tier's files, rebuild ``planner``'s SSD index from its
    slot table when ``restore``, and open the I/O backend."""
    from .storage.ssd_files import SsdFiles
    from .storage.ssd_io import open_ssd_backend
    from .storage.ssd_table import SlotTable
    from .transfer.ssd import SsdMover

    files = SsdFiles.create(
        cache.ssd_cache_dir, cache.num_ssd_blocks, host.stride,
        max_file_size=ssd_max_file_size(cache),
    )
    table = SlotTable.open(files)
    try:
        restored = _restore_ssd(planner, files, table, restore)
        io = open_ssd_backend(
            files, host, queue_depth=cache.ssd_cache_iouring_entries, prefer=backend
        )
    except BaseException:
        table.close()
        files.close()
        raise
    return SsdTier(files, SsdMover(io, table, host), io.name, restored)


def _restore_ssd(planner: Planner, files: Any, table: Any, restore: bool) -> int:
    """Rebuild the SSD tier's index from the slot table of a cache written before; the
    number of blocks restored."""
    tier = planner.ssd
    assert tier is not None
    # Restored blocks count as older than any access after the restart (the caller's
    # clock is unknown here); their write order ranks them among themselves.
    restored = tier.restore(table.restorable(files) if restore else (), -math.inf)
    dropped = table.keep_only(restored)
    if restored or dropped:
        log.info("SSD tier: %d blocks restored from %s, %d records dropped",
                 len(restored), ", ".join(files.dirs), dropped)
    return len(restored)


def open_remote(cache: Any, host: HostPool) -> tuple[Any, Mover]:
    """The remote store named by the config, and the mover of its two paths."""
    from .storage.remote import open_remote_store
    from .transfer.remote import RemoteMover

    store = open_remote_store(cache, host.stride)
    return store, RemoteMover(store, host)
