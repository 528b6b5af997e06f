"""The KV manager on the CPU: round trips, concurrency, cancel, failures."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from flexkv_engine.config import load_config  # noqa: E402
from flexkv_engine.kv_manager import KVManager  # noqa: E402

TINY = [
    "model_config.num_layers=2", "model_config.num_kv_heads=2", "model_config.head_size=16",
    "model_config.dtype=float16", "cache_config.tokens_per_block=4",
]


def manager(cpu_blocks: int = 16, gpu_blocks: int = 32, extra=()) -> KVManager:
    cfg = load_config(None, overrides=[*TINY, f"cache_config.num_cpu_blocks={cpu_blocks}",
                                       *extra], env={}).resolve()
    return KVManager(cfg, num_gpu_blocks=gpu_blocks)


def test_put_then_get_round_trips_bytes_into_other_gpu_slots() -> None:
    with manager() as kv:
        kv.gpu.kv.normal_()
        before = [kv.gpu.block(i).clone() for i in range(4)]
        keys = [101, 102, 103, 104]
        rid = kv.put_async(keys, [0, 1, 2, 3])
        assert kv.wait([rid])[rid].status == "done"
        kv.gpu.kv.fill_(float("nan"))  # poisoned: an unwritten byte fails the check
        rid = kv.get_async([*keys, 105], [10, 11, 12, 13, 14])
        result = kv.wait([rid])[rid]
        assert result.loaded_blocks == 4 and result.hit_blocks["cpu"] == 4
        for i in range(4):
            got = kv.gpu.block(10 + i).view(torch.int16)
            assert torch.equal(got, before[i].view(torch.int16))
        assert torch.isnan(kv.gpu.block(14)).all()  # block 5 was not in any tier


def test_concurrent_gets_and_puts_keep_the_core_invariants() -> None:
    with manager(cpu_blocks=24, gpu_blocks=64) as kv:
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                for i in range(40):
                    base = (seed * 7 + i) % 11
                    keys = [base * 1000 + j for j in range(1, 2 + (i % 4))]
                    slots = [seed * 8 + j for j in range(len(keys))]
                    rid = (kv.put_async if i % 2 else kv.get_async)(keys, slots)
                    assert kv.wait([rid], timeout=30)[rid].status == "done"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        cpu = kv.planner.tiers["cpu"]
        cpu.check()
        assert cpu.root.lock == 0 and all(n.lock == 0 and n.ready for n in cpu.nodes())


def test_cancel_before_completion_rolls_back_the_plan() -> None:
    with manager() as kv:
        mover = kv._movers["d2h"]
        gate = threading.Event()
        original = mover._copy
        mover._copy = lambda job: (gate.wait(10), original(job))  # hold the copy
        rid = kv.put_async([1, 2, 3], [0, 1, 2])
        kv.cancel(rid)  # the D2H copy is already moving: it finishes, then nothing else
        gate.set()
        result = kv.wait([rid], timeout=10)[rid]
        assert result.status == "cancelled"
        cpu = kv.planner.tiers["cpu"]
        cpu.check()
        assert cpu.root.lock == 0


def test_a_failed_copy_is_a_miss_and_releases_everything() -> None:
    with manager() as kv:
        rid = kv.put_async([7, 8], [0, 1])
        kv.wait([rid])
        mover = kv._movers["h2d"]
        mover._copy = lambda job: (_ for _ in ()).throw(OSError("injected"))
        rid = kv.get_async([7, 8], [3, 4])
        result = kv.wait([rid], timeout=10)[rid]
        assert result.status == "failed" and result.loaded_blocks == 0
        assert "injected" in result.errors[0]
        assert kv.planner.stats.tokens_by_tier["cpu"] == 0
        assert kv.planner.tiers["cpu"].root.lock == 0


def test_bad_gpu_ids_are_refused() -> None:
    with manager(gpu_blocks=4) as kv:
        with pytest.raises(ValueError, match=r"GPU block id 9 outside 0\.\.3"):
            kv.get_async([1, 2], [0, 9])
        with pytest.raises(ValueError, match="only 1 GPU block ids"):
            kv.put_async([1, 2], [0])


@pytest.mark.faults
def test_a_mover_that_fails_to_poll_fails_its_ops_instead_of_hanging() -> None:
    from flexkv_engine.core.paths import D2H

    with manager() as kv:
        mover = kv._movers[D2H]
        real_submit, real_poll = mover.submit, mover.poll
        armed, held = threading.Event(), []

        def submit(job):  # the device takes the job, then its mover breaks
            held.append(job)
            armed.set()

        def poll(timeout=0.0):
            if armed.is_set():
                armed.clear()
                mover.submit = real_submit
                raise RuntimeError("device lost")
            return real_poll(timeout)

        mover.submit, mover.poll = submit, poll
        rid = kv.put_async([1, 2, 3], [0, 1, 2])
        result = kv.wait([rid], timeout=10)[rid]
        assert result.status == "failed"
        assert any("mover failed" in e and "device lost" in e for e in result.errors)
        # A late report of that job is ignored; the next ops run as usual.
        from flexkv_engine.transfer.protocol import Done

        kv._on_done(Done(held[0].job_id, True, None, 0, 0.0, 0.0))
        rid = kv.put_async([4, 5], [3, 4])
        assert kv.wait([rid], timeout=10)[rid].status == "done"
        rid = kv.get_async([4, 5], [8, 9])
        assert kv.wait([rid], timeout=10)[rid].hit_blocks["cpu"] == 2
