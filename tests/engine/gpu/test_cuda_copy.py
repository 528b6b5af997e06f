"""The CUDA mover on a GPU: byte-exact round trips GPU -> CPU -> GPU on both paths.

Every destination is poisoned before each check, so an unwritten byte fails it, and the
blocks a job does not name must keep their poison.
"""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from flexkv_engine.config import load_config  # noqa: E402
from flexkv_engine.layout import KVLayout  # noqa: E402
from flexkv_engine.storage.host_pool import GpuKVCache, HostPool  # noqa: E402
from flexkv_engine.transfer.cuda_copy import (  # noqa: E402
    CE,
    CE_PER_COPY,
    SM,
    CudaCopyMover,
    cuda_mover_unavailable,
)
from flexkv_engine.transfer.protocol import Done, Job  # noqa: E402

# 4 layers of Llama-3-8B's block: 32 KiB chunks, 256 KiB blocks.
SMALL = KVLayout(
    num_layers=4, num_kv_heads=8, head_size=128, tokens_per_block=16, dtype="bfloat16", dtype_size=2
)
POISON_HOST, POISON_GPU = 0xA5, 0x5A


@pytest.fixture(autouse=True)
def _needs_cuda_mover() -> None:
    why = cuda_mover_unavailable("cuda")
    if why is not None:
        pytest.skip(f"gpu: {why}")


def setup(
    layout: KVLayout = SMALL, gpu_blocks: int = 48, host_blocks: int = 64, pin: bool = True, **kw
):
    gpu = GpuKVCache(layout, gpu_blocks, "cuda")
    host = HostPool(layout, host_blocks, pin=pin)
    raw = gpu.kv.view(torch.uint8).view(-1)
    raw.copy_(torch.randint(0, 256, raw.shape, dtype=torch.uint8, device="cuda"))
    return gpu, host, CudaCopyMover(host, gpu, **kw)


def run(mover: CudaCopyMover, jobs: list[tuple[int, bool, list[int], list[int], int, int]]):
    for job_id, h2d, gpu_ids, host_ids, mode, sms in jobs:
        mover.submit_blocks(job_id, h2d, gpu_ids, host_ids, mode=mode, sms=sms)
    done: dict[int, Done] = {}
    while len(done) < len(jobs):
        got = mover.poll(timeout=30)
        assert got, "no job finished within 30 s"
        done.update({d.job_id: d for d in got})
    return done


def gpu_bytes(gpu: GpuKVCache, i: int):
    return gpu.block_as_bytes(i).cpu()


def round_trip(gpu, host, mover, mode: int, sms: int, n: int, seed: int) -> None:
    """D2H n random blocks into partly consecutive host slots, then H2D into other blocks."""
    rng = random.Random(seed)
    src = rng.sample(range(gpu.num_blocks), n)
    run_start = rng.randrange(host.num_blocks - n // 2)
    consecutive = list(range(run_start, run_start + n // 2))  # one run of slots
    others = [s for s in range(host.num_blocks) if s not in consecutive]
    slots = consecutive + rng.sample(others, n - len(consecutive))
    originals = {g: gpu_bytes(gpu, g) for g in src}

    host.buffer.fill_(POISON_HOST)
    done = run(mover, [(1, False, src, slots, mode, sms)])
    assert done[1].ok, done[1].error
    assert done[1].num_bytes == n * host.layout.block_bytes and done[1].transfer_s > 0
    for g, s in zip(src, slots, strict=True):
        assert torch.equal(host.block_bytes(s), originals[g]), f"D2H block {g} -> slot {s}"
    for s in set(range(host.num_blocks)) - set(slots):
        assert bool((host.block_bytes(s) == POISON_HOST).all()), f"slot {s} was written"

    dst = rng.sample(range(gpu.num_blocks), n)
    gpu.kv.view(torch.uint8).fill_(POISON_GPU)
    done = run(mover, [(2, True, dst, slots, mode, sms)])
    assert done[2].ok, done[2].error
    for g, s in zip(dst, slots, strict=True):
        assert torch.equal(gpu_bytes(gpu, g), host.block_bytes(s)), f"H2D slot {s} -> block {g}"
    for g in set(range(gpu.num_blocks)) - set(dst):
        assert bool((gpu_bytes(gpu, g) == POISON_GPU).all()), f"GPU block {g} was written"


@pytest.mark.parametrize(
    ("mode", "sms"), [(SM, 1), (SM, 4), (SM, 16), (SM, 32), (CE, 0), (CE_PER_COPY, 0)]
)
def test_round_trip_is_byte_exact(mode: int, sms: int) -> None:
    gpu, host, mover = setup(staging_blocks=8)  # 20 blocks: three staging pieces
    try:
        for seed in range(2):
            round_trip(gpu, host, mover, mode, sms, n=20, seed=seed)
    finally:
        mover.close()


@pytest.mark.parametrize("l2_prefetch", [0, 1, 256])
@pytest.mark.parametrize("chunks_per_iter", [1, 4])
@pytest.mark.parametrize("threads", [128, 512])
def test_kernel_variants_round_trip(chunks_per_iter: int, threads: int, l2_prefetch: int) -> None:
    gpu, host, mover = setup(
        threads=threads, chunks_per_iter=chunks_per_iter, l2_prefetch=l2_prefetch
    )
    try:
        round_trip(gpu, host, mover, SM, 8, n=13, seed=3)
    finally:
        mover.close()


@pytest.mark.parametrize(
    ("dtype", "size", "heads", "dim"),
    [
        ("float16", 2, 1, 6),  # 36-byte chunks: 4-byte vectors
        ("uint8", 1, 1, 3),  # 9-byte chunks: byte copies
    ],
)
@pytest.mark.parametrize("mode", [SM, CE])
def test_odd_layouts_round_trip(dtype: str, size: int, heads: int, dim: int, mode: int) -> None:
    layout = KVLayout(
        num_layers=3,
        num_kv_heads=heads,
        head_size=dim,
        tokens_per_block=3,
        dtype=dtype,
        dtype_size=size,
        kv=1,
    )
    gpu, host, mover = setup(layout, gpu_blocks=24, host_blocks=20, staging_blocks=4)
    try:
        round_trip(gpu, host, mover, mode, 2, n=9, seed=5)
    finally:
        mover.close()


def test_pageable_host_pool_is_registered_and_round_trips() -> None:
    gpu, host, mover = setup(pin=False)
    try:
        assert mover._engine.host_registered_here
        round_trip(gpu, host, mover, SM, 8, n=10, seed=7)
        round_trip(gpu, host, mover, CE, 0, n=10, seed=8)
    finally:
        mover.close()


def test_both_directions_at_once_on_many_jobs() -> None:
    gpu, host, mover = setup(gpu_blocks=64, host_blocks=64, staging_blocks=4)
    try:
        rng = random.Random(11)
        host.buffer.copy_(torch.randint(0, 256, host.buffer.shape, dtype=torch.uint8))
        gpu_ids = rng.sample(range(64), 64)
        slots = rng.sample(range(64), 64)
        up_gpu, down_gpu = gpu_ids[:32], gpu_ids[32:]
        up_slots, down_slots = slots[:32], slots[32:]
        want_gpu = {s: host.block_bytes(s).clone() for s in up_slots}
        want_host = {g: gpu_bytes(gpu, g) for g in down_gpu}
        jobs = []
        for k in range(8):  # interleaved H2D and D2H jobs of 4 blocks, both paths
            part = slice(4 * k, 4 * k + 4)
            mode = SM if k % 2 else CE
            jobs.append((100 + k, True, up_gpu[part], up_slots[part], mode, 4))
            jobs.append((200 + k, False, down_gpu[part], down_slots[part], mode, 4))
        done = run(mover, jobs)
        assert all(d.ok for d in done.values()), [d.error for d in done.values()]
        for g, s in zip(up_gpu, up_slots, strict=True):
            assert torch.equal(gpu_bytes(gpu, g), want_gpu[s])
        for g, s in zip(down_gpu, down_slots, strict=True):
            assert torch.equal(host.block_bytes(s), want_host[g])
    finally:
        mover.close()


def test_bad_ids_fail_the_job_and_not_the_mover() -> None:
    gpu, host, mover = setup()
    try:
        mover.submit(Job(1, "h2d", [0, 64], [0, 1]))  # host slot 64 of 64
        mover.submit(Job(2, "d2h", [48], [0]))  # GPU block 48 of 48
        mover.submit(Job(3, "d2h", [1, 2], [3]))  # length mismatch
        mover.submit(Job(4, "d2h", [], []))  # nothing to move
        done = {}
        while len(done) < 4:
            got = mover.poll(timeout=10)
            assert got, "no job finished within 10 s"
            done.update({d.job_id: d for d in got})
        assert not done[1].ok and "host block id 64" in done[1].error
        assert not done[2].ok and "GPU block id 48" in done[2].error
        assert not done[3].ok and "2 GPU ids but 1 host ids" in done[3].error
        assert done[4].ok and done[4].num_bytes == 0
        round_trip(gpu, host, mover, SM, 4, n=6, seed=1)
    finally:
        mover.close()


def test_close_waits_for_queued_jobs() -> None:
    _, _, mover = setup()
    for k in range(6):
        mover.submit(Job(k, "d2h", list(range(8 * k, 8 * k + 8)), list(range(8))))
    mover.close()
    done = mover.poll()
    assert sorted(d.job_id for d in done) == list(range(6)) and all(d.ok for d in done)
    mover.submit(Job(9, "d2h", [0], [0]))  # refused once closed, reported through poll
    (late,) = mover.poll()
    assert late.job_id == 9 and not late.ok and "closed" in late.error


TINY = [
    "model_config.num_layers=2",
    "model_config.num_kv_heads=2",
    "model_config.head_size=16",
    "model_config.dtype=float16",
    "cache_config.tokens_per_block=4",
    "cache_config.num_cpu_blocks=16",
]


@pytest.mark.parametrize(("cuda_kernels", "ce"), [(None, False), (None, True), (False, False)])
def test_kv_manager_on_cuda_round_trips(cuda_kernels: bool | None, ce: bool) -> None:
    from flexkv_engine.kv_manager import KVManager
    from flexkv_engine.transfer.torch_copy import TorchCopyMover

    extra = [f"cache_config.use_ce_transfer_h2d={ce}", f"cache_config.use_ce_transfer_d2h={ce}"]
    cfg = load_config(None, overrides=[*TINY, *extra], env={}).resolve()
    with KVManager(cfg, num_gpu_blocks=32, device="cuda", cuda_kernels=cuda_kernels) as kv:
        want = TorchCopyMover if cuda_kernels is False else CudaCopyMover
        assert isinstance(kv._movers["h2d"], want)
        kv.gpu.kv.normal_()
        before = [kv.gpu.block(i).clone() for i in range(4)]
        keys = [101, 102, 103, 104]
        rid = kv.put_async(keys, [0, 1, 2, 3])
        assert kv.wait([rid])[rid].status == "done"
        kv.gpu.kv.fill_(float("nan"))
        rid = kv.get_async([*keys, 105], [10, 11, 12, 13, 14])
        result = kv.wait([rid])[rid]
        assert result.loaded_blocks == 4 and result.hit_blocks["cpu"] == 4
        for i in range(4):
            assert torch.equal(kv.gpu.block(10 + i).view(torch.int16), before[i].view(torch.int16))
        assert torch.isnan(kv.gpu.block(14)).all()
