"""Namespaces (tenant, LoRA, cache salt) through the KV manager: the same tokens in two
namespaces never match each other's blocks, in CPU, on SSD, or after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from .ssd_engine import (  # noqa: E402
    BACKENDS,
    assert_idle,
    disk_root,
    drop_cpu,
    get,
    loaded_exactly,
    open_kv,
    put,
    untouched,
)

TOKENS = list(range(900, 900 + 16 * 5 + 3))  # six blocks, the last one partial
SLOTS = list(range(20, 26))


@pytest.fixture
def root() -> Iterator[Path]:
    yield from disk_root()


def hits(kv, keys: list[int]) -> tuple[int, dict[str, int]]:
    result = get(kv, keys, SLOTS)
    assert result.status == "done"
    n = result.loaded_blocks
    assert loaded_exactly(kv, keys, SLOTS, n) and untouched(kv, SLOTS[n:])
    return n, result.hit_blocks


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_tokens_in_two_namespaces_never_match(root: Path, backend: str) -> None:
    dirs = [root / "a"]
    with open_kv(dirs, backend) as kv:
        mine, theirs, plain = (kv.keys_for(TOKENS, ns) for ns in ("tenant-a", "tenant-b", None))
        assert len(mine) == 6 and not set(mine) & set(theirs) and not set(mine) & set(plain)
        assert put(kv, mine, range(6)).status == "done"

        assert hits(kv, mine) == (6, {"gpu": 0, "cpu": 6, "ssd": 0, "remote": 0})
        assert hits(kv, theirs)[0] == 0
        assert hits(kv, plain)[0] == 0
        drop_cpu(kv)  # the same from the SSD tier
        assert hits(kv, theirs)[0] == 0
        assert hits(kv, mine) == (6, {"gpu": 0, "cpu": 0, "ssd": 6, "remote": 0})

        # The other namespace stores its own blocks; each reads back its own bytes.
        assert put(kv, theirs, range(6)).status == "done"
        drop_cpu(kv)
        assert hits(kv, theirs)[1]["ssd"] == 6
        assert hits(kv, mine)[1]["ssd"] == 6
        assert_idle(kv)
    with open_kv(dirs, backend) as kv:  # restored from the slot table: still apart
        assert kv.stats()["ssd"]["restored_blocks"] == 12
        assert hits(kv, plain)[0] == 0
        assert hits(kv, mine)[1]["ssd"] == 6
        assert hits(kv, theirs)[1]["ssd"] == 6
        assert_idle(kv)
