"""GET/PUT planning across CPU, SSD and remote tiers."""

from __future__ import annotations

import pytest

from flexkv_engine.core.graph import CANCELLED, DONE
from flexkv_engine.core.index import TierIndex
from flexkv_engine.core.paths import D2H, H2D, REMOTE_READ, REMOTE_WRITE, SSD_READ, SSD_WRITE
from flexkv_engine.core.planner import Planner

from .conftest import chain


def planner(cpu: int = 8, ssd: int | None = None, remote: int | None = None, **kw) -> Planner:
    tiers = {"cpu": TierIndex("cpu", cpu)}
    if ssd is not None:
        tiers["ssd"] = TierIndex("ssd", ssd)
    if remote is not None:
        tiers["remote"] = TierIndex("remote", remote)
    return Planner(tiers, 16, **kw)


def ops(graph) -> list[tuple[str, int, int, tuple[int, ...]]]:
    return [(op.path, op.start, op.end, op.deps) for op in graph.ops]


def put(p: Planner, symbols, t: float = 0.0) -> None:
    keys = chain(symbols)
    p.run(p.plan_put("w", keys, 16 * len(keys), t))


def test_put_writes_through_every_tier_with_dependencies() -> None:
    p = planner(ssd=16, remote=16)
    graph = p.plan_put("r1", chain((1, 2, 3)), 48, 0.0)
    assert ops(graph) == [(D2H, 0, 3, ()), (SSD_WRITE, 0, 3, (0,)), (REMOTE_WRITE, 0, 3, (0,))]
    assert [op.op_id for op in graph.runnable()] == [0]
    p.complete(graph, graph.ops[0])
    assert [op.op_id for op in graph.runnable()] == [1, 2]
    p.run(graph)
    assert graph.done
    assert p.stats.stored_blocks == {"cpu": 3, "ssd": 3, "remote": 3}
    for tier in p.tiers.values():
        tier.check()
        assert tier.root.lock == 0


def test_get_serves_cpu_then_ssd_then_remote_and_stages_into_cpu() -> None:
    p = planner(cpu=8, ssd=8, remote=16)
    put(p, (1, 2, 3, 4, 5, 6))
    # Shape the tiers: CPU keeps 2 blocks, SSD 4, remote all 6.
    p.tiers["cpu"].evict(4)
    p.tiers["ssd"].evict(2)
    graph = p.plan_get("r2", chain((1, 2, 3, 4, 5, 6, 7)), 7 * 16 - 5, 1.0)
    assert ops(graph) == [
        (SSD_READ, 2, 4, ()),
        (REMOTE_READ, 4, 6, ()),
        (H2D, 0, 2, ()),
        (H2D, 2, 6, (0, 1)),
    ]
    src, dst = p.block_ids(graph.ops[0])
    assert len(src) == len(dst) == 2
    p.run(graph)
    assert p.stats.tokens_by_tier == {"gpu": 0, "cpu": 32, "ssd": 32, "remote": 32}
    assert p.tiers["cpu"].probe(chain((1, 2, 3, 4, 5, 6))) == (6, 6)  # staged, inclusive
    assert p.stats.hit_rate == pytest.approx(96 / 107)


def test_gpu_matched_blocks_are_counted_apart() -> None:
    p = planner()
    put(p, (1, 2, 3))
    graph = p.run(p.plan_get("r", chain((1, 2, 3, 4)), 64, 1.0, gpu_blocks=2))
    assert ops(graph) == [(H2D, 2, 3, ())]
    assert p.stats.tokens_by_tier["gpu"] == 32 and p.stats.tokens_by_tier["cpu"] == 16


def test_failed_read_is_a_miss_for_the_staged_part_and_rolls_back() -> None:
    p = planner(cpu=8, ssd=8)
    put(p, (1, 2, 3, 4))
    p.tiers["cpu"].evict(2)
    graph = p.plan_get("r", chain((1, 2, 3, 4)), 64, 1.0)
    read = next(op for op in graph.ops if op.path == SSD_READ)
    p.complete(graph, read, ok=False)
    p.run(graph)
    assert graph.done and graph.ops[-1].status == CANCELLED
    assert p.stats.tokens_by_tier["cpu"] == 32 and p.stats.tokens_by_tier["ssd"] == 0
    assert p.tiers["cpu"].probe(chain((1, 2, 3, 4))) == (2, 2)  # staged node dropped
    for tier in p.tiers.values():
        tier.check()
        assert tier.root.lock == 0


def test_cancel_rolls_back_a_put_in_flight() -> None:
    p = planner(ssd=8)
    graph = p.plan_put("r", chain((1, 2)), 32, 0.0)
    p.complete(graph, graph.ops[0])
    p.cancel(graph)
    assert [op.status for op in graph.ops] == [DONE, CANCELLED]
    assert p.tiers["cpu"].probe(chain((1, 2))) == (2, 2)
    assert p.tiers["ssd"].probe(chain((1, 2))) == (0, 0)
    assert p.tiers["ssd"].used == 0 and p.tiers["cpu"].root.lock == 0


def test_blocks_still_being_written_are_not_served_and_are_counted() -> None:
    p = planner()
    writing = p.plan_put("w", chain((1, 2)), 32, 0.0)
    graph = p.run(p.plan_get("r", chain((1, 2)), 32, 0.0))
    assert graph.ops == [] and graph.in_flight
    assert p.stats.gets_in_flight == 1
    # A second PUT does not write the same blocks twice.
    assert p.plan_put("w2", chain((1, 2)), 32, 0.0).ops == []
    p.run(writing)
    assert p.run(p.plan_get("r", chain((1, 2)), 32, 1.0)).served["cpu"] == (0, 2)


def test_prefetch_stages_into_cpu_without_touching_the_gpu() -> None:
    p = planner(cpu=8, ssd=8)
    put(p, (1, 2, 3))
    p.tiers["cpu"].evict(3)
    graph = p.run(p.plan_get("pf", chain((1, 2, 3)), 48, 1.0, to_gpu=False))
    assert ops(graph) == [(SSD_READ, 0, 3, ())]
    assert p.stats.gets == 0
    hit = p.run(p.plan_get("r", chain((1, 2, 3)), 48, 2.0))
    assert hit.served["cpu"] == (0, 3)


def test_admission_stores_only_blocks_seen_often_enough() -> None:
    p = planner(store_after_hits=1)
    put(p, (1, 2))
    assert p.tiers["cpu"].used == 0  # first sighting: not stored
    put(p, (1, 2, 3))
    assert p.tiers["cpu"].probe(chain((1, 2, 3))) == (2, 2)
    put(p, (1, 2, 3))
    assert p.tiers["cpu"].used == 3


def test_a_full_tier_of_locked_blocks_stores_what_fits() -> None:
    p = planner(cpu=2)
    held = p.plan_put("a", chain((1, 2)), 32, 0.0)  # unready, locked
    graph = p.run(p.plan_put("b", chain((5, 6)), 32, 0.0))
    assert graph.ops == [] and p.tiers["cpu"].alloc_failures == 1
    p.run(held)


def test_planning_is_deterministic() -> None:
    def run() -> list:
        p = planner(cpu=5, ssd=7)
        out = []
        for t, path in enumerate([(1, 2, 3), (1, 4), (2, 2, 2, 2), (1, 2, 3, 5), (1, 4, 4)]):
            keys = chain(path)
            g = p.run(p.plan_get(str(t), keys, 16 * len(keys), t))
            out.append((ops(g), p.block_ids(g.ops[0]) if g.ops else None))
            p.run(p.plan_put(str(t), keys, 16 * len(keys), t))
        return out

    assert run() == run()


def test_a_failed_writer_of_a_staged_run_leaves_it_to_the_other_until_that_ends() -> None:
    # One CPU run staged by an SSD read (block 0) and a remote read (blocks 1-2): the
    # remote read fails while the SSD read is still writing into the run's blocks.
    p = planner(cpu=3, ssd=4, remote=6)
    put(p, (1, 0, 0, 0, 0, 0), 1.0)
    put(p, (0, 0, 0, 0, 0, 0, 0), 2.0)
    graph = p.plan_get("r", chain((1, 0, 0)), 45, 3.0)
    ssd = next(op for op in graph.ops if op.path == SSD_READ)
    remote = next(op for op in graph.ops if op.path == REMOTE_READ)
    assert ssd.dst is not None and remote.dst is not None and ssd.dst[1] is remote.dst[1]
    cpu, node = ssd.dst
    ids = cpu.block_ids(node, ssd.start, ssd.end)
    p.complete(graph, remote, ok=False)
    assert not node.removed and cpu.block_ids(node, ssd.start, ssd.end) == ids
    p.complete(graph, ssd)
    assert graph.done and node.removed and cpu.used == 0
    assert p.stats.tokens_by_tier["ssd"] == p.stats.tokens_by_tier["remote"] == 0
    for tier in p.tiers.values():
        tier.check()
        assert tier.root.lock == 0


def test_a_write_of_blocks_already_in_cpu_keeps_its_source_when_the_new_copy_fails() -> None:
    p = planner(cpu=5, ssd=1)  # room in SSD for block 0 only: its write needs no D2H
    first = p.plan_put("w", chain((0,)), 16, 1.0)
    p.complete(first, next(op for op in first.ops if op.path == D2H))
    p.cancel(first)  # block 0 in CPU only
    graph = p.plan_put("w2", chain((0, 0)), 32, 2.0)
    d2h = next(op for op in graph.ops if op.path == D2H)
    write = next(op for op in graph.ops if op.path == SSD_WRITE)
    assert (d2h.start, write.start, write.end, write.deps) == (1, 0, 1, ())
    ids = p.block_ids(write)
    p.complete(graph, d2h, ok=False)
    assert write.src is not None and not write.src[1].removed and p.block_ids(write) == ids
    p.complete(graph, write)
    assert graph.done and p.tiers["ssd"].probe(chain((0, 0))) == (1, 1)
    for tier in p.tiers.values():
        tier.check()
        assert tier.root.lock == 0
