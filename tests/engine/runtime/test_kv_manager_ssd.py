"""The KV manager with an SSD tier: GPU -> CPU -> SSD -> CPU -> GPU, prefetch, cancel.

Runs with the io_uring backend (marker ``io_uring``) and the pread/pwrite thread
fallback; the SSD files live on a real disk (O_DIRECT), striped over two directories.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from flexkv_engine.config import load_config  # noqa: E402
from flexkv_engine.kv_manager import KVManager  # noqa: E402
from flexkv_engine.storage import filesystem_type  # noqa: E402

BACKENDS = [pytest.param("io_uring", marks=pytest.mark.io_uring), "threads"]


@pytest.fixture
def ssd_dirs():
    base = Path("/var/tmp")
    if filesystem_type(base) in (None, "tmpfs"):
        base = Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="flexkv-test-", dir=base))
    yield [root / "a", root / "b"]
    shutil.rmtree(root, ignore_errors=True)


def manager(ssd_dirs, backend: str, cpu: int = 8) -> KVManager:
    cfg = load_config(None, env={}, overrides=[
        f"cache_config.num_cpu_blocks={cpu}", "cache_config.num_ssd_blocks=64",
        f"cache_config.ssd_cache_dir={ssd_dirs[0]};{ssd_dirs[1]}",
        "cache_config.ssd_cache_iouring_entries=8",
        "model_config.num_layers=2", "model_config.num_kv_heads=2",
        "model_config.head_size=64", "model_config.dtype=float16",
        "cache_config.tokens_per_block=16",
    ]).resolve()
    kv = KVManager(cfg, num_gpu_blocks=48, ssd_backend=backend)
    assert kv.ssd_backend_name == backend
    return kv


def as_bits(tensor):
    return tensor.view(torch.int16)


def store(kv: KVManager, keys: list[int], slots: list[int]) -> list:
    for slot in slots:
        kv.gpu.kv[:, :, slot].normal_()
    blocks = [kv.gpu.block(s).clone() for s in slots]
    rid = kv.put_async(keys, slots)
    assert kv.wait([rid])[rid].status == "done"
    return blocks


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_through_ssd_is_byte_exact(ssd_dirs, backend) -> None:
    with manager(ssd_dirs, backend) as kv:
        a, b = list(range(1, 7)), list(range(101, 107))
        blocks_a = store(kv, a, list(range(6)))
        store(kv, b, list(range(6, 12)))  # pushes most of a out of the 8-block CPU tier
        assert kv.planner.tiers["cpu"].probe(a)[0] < 6
        kv.gpu.kv.fill_(float("nan"))  # poison: an unwritten byte fails the check
        rid = kv.get_async(a, list(range(20, 26)))
        result = kv.wait([rid])[rid]
        assert result.status == "done" and result.loaded_blocks == 6
        assert result.hit_blocks["ssd"] > 0
        for i in range(6):
            assert torch.equal(as_bits(kv.gpu.block(20 + i)), as_bits(blocks_a[i])), i
        files = kv.ssd_files
        assert files is not None and len({Path(p).parent for p in files.paths}) == 2
        kv.planner.tiers["ssd"].check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefetch_stages_blocks_so_the_get_hits_cpu(ssd_dirs, backend) -> None:
    with manager(ssd_dirs, backend) as kv:
        a, b = list(range(1, 5)), list(range(201, 209))
        blocks_a = store(kv, a, list(range(4)))
        store(kv, b, list(range(4, 12)))  # a is now on SSD only
        assert kv.planner.tiers["cpu"].probe(a)[0] == 0
        rid = kv.prefetch_async(a)
        assert kv.wait([rid])[rid].status == "done"
        assert kv.planner.tiers["cpu"].probe(a)[0] == 4
        rid = kv.get_async(a, list(range(30, 34)))
        result = kv.wait([rid])[rid]
        assert result.hit_blocks["cpu"] == 4 and result.hit_blocks["ssd"] == 0
        for i in range(4):
            assert torch.equal(as_bits(kv.gpu.block(30 + i)), as_bits(blocks_a[i]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancel_of_a_get_in_flight_releases_everything(ssd_dirs, backend) -> None:
    with manager(ssd_dirs, backend) as kv:
        a, b = list(range(1, 7)), list(range(301, 309))
        store(kv, a, list(range(6)))
        store(kv, b, list(range(6, 14)))
        rid = kv.get_async(a, list(range(20, 26)))
        kv.cancel(rid)
        result = kv.wait([rid], timeout=10)[rid]
        assert result.status in ("cancelled", "done")
        for tier in kv.planner.tiers.values():
            tier.check()
            assert tier.root.lock == 0
            assert all(n.ready for n in tier.nodes())  # nothing left half-written


def test_refuses_a_directory_with_foreign_files(ssd_dirs) -> None:
    ssd_dirs[0].mkdir(parents=True)
    (ssd_dirs[0] / "precious.db").write_text("not ours")
    with pytest.raises(ValueError, match=r"precious\.db"):
        manager(ssd_dirs, "threads")
