"""GPU <-> host copies with torch, between the layer-first cache and the block-first pool.

This is the path on machines without CUDA kernels (the "GPU" cache is then a CPU tensor):
a worker thread per direction gathers the blocks of a job with advanced indexing and
scatters them into the other layout. torch releases the GIL while it copies.

On a CPU "GPU" each direction gathers into a staging buffer that it keeps and grows: a
fresh tensor per job would cost page faults on every job above glibc's largest mmap
threshold (32 MiB), which doubled the time per byte of those jobs and made copy time
depend on the job's size.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from ..core.paths import D2H, H2D
from ..storage.host_pool import GpuKVCache, HostPool
from .protocol import Done, Job, drain


class TorchCopyMover:
    """H2D and D2H with torch; one worker thread per direction, so both overlap."""

    paths = (H2D, D2H)

    def __init__(self, host: HostPool, gpu: GpuKVCache) -> None:
        self.host = host
        self.gpu = gpu
        self._inbox: dict[str, queue.SimpleQueue[tuple[Job, float] | None]] = {
            H2D: queue.SimpleQueue(), D2H: queue.SimpleQueue(),
        }
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._staging: dict[str, Any] = {}  # path -> flat buffer, used by its worker only
        self._workers = [
            threading.Thread(target=self._work, args=(path,), name=f"flexkv-{path}", daemon=True)
            for path in self.paths
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, job: Job) -> None:
        self._inbox[job.path].put((job, time.perf_counter()))

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        return drain(self._done, timeout)

    def close(self) -> None:
        for inbox in self._inbox.values():
            inbox.put(None)
        for worker in self._workers:
            worker.join()

    def _work(self, path: str) -> None:
        inbox = self._inbox[path]
        while (item := inbox.get()) is not None:
            job, submitted = item
            started = time.perf_counter()
            error = None
            try:
                self._copy(job)
            except Exception as exc:  # reported through the job, never lost
                error = f"{path} copy failed: {exc!r}"
            ended = time.perf_counter()
            self._done.put(Done(
                job.job_id, error is None, error, len(job.src_ids) * self.host.layout.block_bytes,
                started - submitted, ended - started,
            ))

    def _copy(self, job: Job) -> None:
        import torch

        kv, blocks = self.gpu.kv, self.host.blocks
        device = kv.device
        n = len(job.src_ids)
        if job.path == H2D:
            host_ids = torch.as_tensor(list(job.src_ids), dtype=torch.long)
            gpu_ids = torch.as_tensor(list(job.dst_ids), dtype=torch.long, device=device)
            if device.type == "cpu":
                out = self._stage(job.path, (n, *blocks.shape[1:]))
                data = torch.index_select(blocks, 0, host_ids, out=out)
            else:
                data = blocks.index_select(0, host_ids).to(device, non_blocking=False)
            kv.index_copy_(2, gpu_ids, data.permute(1, 2, 0, 3, 4, 5))
        else:
            gpu_ids = torch.as_tensor(list(job.src_ids), dtype=torch.long, device=device)
            host_ids = torch.as_tensor(list(job.dst_ids), dtype=torch.long)
            if device.type == "cpu":
                out = self._stage(job.path, (*kv.shape[:2], n, *kv.shape[3:]))
                data = torch.index_select(kv, 2, gpu_ids, out=out).permute(2, 0, 1, 3, 4, 5)
            else:
                data = kv.index_select(2, gpu_ids).permute(2, 0, 1, 3, 4, 5).to("cpu")
            blocks.index_copy_(0, host_ids, data)
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()

    def _stage(self, path: str, shape: tuple[int, ...]) -> Any:
        """A view of ``path``'s staging buffer with ``shape`` (grown when too small)."""
        import math

        import torch

        numel = math.prod(shape)
        buf = self._staging.get(path)
        if buf is None or buf.numel() < numel:
            buf = self._staging[path] = torch.empty(numel, dtype=self.host.blocks.dtype)
        return buf[:numel].view(shape)
