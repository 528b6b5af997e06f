"""GPU <-> host copies with the native CUDA engine (``_native.KVTransfer``).

Per direction, the path follows the cache config: the SM gather/scatter kernel over the
mapped host pool, its grid ``transfer_sms_h2d`` / ``transfer_sms_d2h`` CTAs, or with
``use_ce_transfer_h2d`` / ``use_ce_transfer_d2h`` the copy engines, whole blocks at a time
through a block-first staging buffer on the GPU. Each direction has its own streams, so
H2D and D2H overlap; each job records a CUDA event, and native waiter threads turn
finished events into completions that ``poll`` returns. Only raw pointers cross into the
native code: the GPU cache tensor and the pinned host pool must outlive the mover.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..core.paths import D2H, H2D
from ..storage.host_pool import GpuKVCache, HostPool
from .protocol import Done, Job

#: ``mode`` values of :meth:`CudaCopyMover.submit_blocks`.
DEFAULT, SM, CE, CE_PER_COPY = 0, 1, 2, 3


def cuda_mover_unavailable(device: str = "cuda") -> str | None:
    """None when the CUDA mover can run for ``device``, else the reason it cannot."""
    try:
        from .. import _native
    except ImportError as exc:
        return f"native module not importable: {exc}"
    if not _native.build_info()["cuda"] or not hasattr(_native, "KVTransfer"):
        return "the native module was built without CUDA (no nvcc at build time)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return f"device {device!r} is not a CUDA device visible to torch"
    return None


class CudaCopyMover:
    """H2D and D2H on the GPU's own streams; see the module docstring."""

    paths = (H2D, D2H)

    def __init__(
        self,
        host: HostPool,
        gpu: GpuKVCache,
        *,
        sms_h2d: int = 8,
        sms_d2h: int = 8,
        ce_h2d: bool = False,
        ce_d2h: bool = False,
        ce_batch: bool = True,
        staging_blocks: int = 32,
        threads: int = 512,
        chunks_per_iter: int = 2,
        l2_prefetch: int = 0,
    ) -> None:
        from .. import _native

        why = cuda_mover_unavailable(str(gpu.device))
        if why is not None:
            raise RuntimeError(f"CUDA mover unavailable: {why}")
        if not gpu.kv.is_contiguous():
            raise ValueError("the GPU KV cache must be one contiguous tensor")
        layout = host.layout
        self.host = host
        self.gpu = gpu
        self.block_bytes = layout.block_bytes
        device = gpu.kv.device.index if gpu.kv.device.index is not None else 0
        self._engine = _native.KVTransfer(
            device,
            gpu.kv.data_ptr(),
            gpu.num_blocks,
            host.base_ptr,
            host.stride,
            host.num_blocks,
            layout.num_layers,
            layout.kv,
            layout.chunk_bytes,
            sms_h2d=sms_h2d,
            sms_d2h=sms_d2h,
            ce_h2d=ce_h2d,
            ce_d2h=ce_d2h,
            ce_batch=ce_batch,
            staging_blocks=staging_blocks,
            threads=threads,
            chunks_per_iter=chunks_per_iter,
            l2_prefetch=l2_prefetch,
        )
        self._refused: deque[Done] = deque()  # jobs the engine would not take

    @classmethod
    def from_config(cls, cache: Any, host: HostPool, gpu: GpuKVCache) -> CudaCopyMover:
        """Paths and grid sizes from a ``CacheConfig``."""
        return cls(
            host,
            gpu,
            sms_h2d=cache.transfer_sms_h2d,
            sms_d2h=cache.transfer_sms_d2h,
            ce_h2d=cache.use_ce_transfer_h2d,
            ce_d2h=cache.use_ce_transfer_d2h,
        )

    @property
    def sm_count(self) -> int:
        return int(self._engine.sm_count)

    @property
    def batch_copies(self) -> bool:
        """The copy-engine path issues cudaMemcpyBatchAsync (else one copy per run)."""
        return bool(self._engine.batch_copies)

    def submit(self, job: Job) -> None:
        if job.path == H2D:
            self.submit_blocks(job.job_id, True, job.dst_ids, job.src_ids)
        elif job.path == D2H:
            self.submit_blocks(job.job_id, False, job.src_ids, job.dst_ids)
        else:
            self._refused.append(
                Done(job.job_id, False, f"CudaCopyMover has no path {job.path!r}", 0, 0.0, 0.0)
            )

    def submit_blocks(
        self,
        job_id: int,
        h2d: bool,
        gpu_ids: Any,
        host_ids: Any,
        *,
        mode: int = DEFAULT,
        sms: int = 0,
    ) -> None:
        """Queue ``gpu_ids[i] <-> host_ids[i]``; ``mode``/``sms`` force a path or a grid."""
        try:
            self._engine.submit(job_id, h2d, list(gpu_ids), list(host_ids), mode, sms)
        except (IndexError, ValueError, RuntimeError) as exc:
            path = H2D if h2d else D2H
            self._refused.append(Done(job_id, False, f"{path} copy refused: {exc}", 0, 0.0, 0.0))

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            out = [self._refused.popleft() for _ in range(len(self._refused))]
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            # Wait in slices so that a job refused meanwhile is not held back.
            out.extend(Done(*c) for c in self._engine.poll(0, 0.0 if out else max(left, 0.0)))
            if out or self._refused or (deadline is not None and time.monotonic() >= deadline):
                return out + [self._refused.popleft() for _ in range(len(self._refused))]

    def close(self) -> None:
        self._engine.close()


__all__ = ["CE", "CE_PER_COPY", "DEFAULT", "SM", "CudaCopyMover", "cuda_mover_unavailable"]
