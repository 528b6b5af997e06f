"""Hit-rate curves: a tier's LRU hit rate at every capacity, in one pass over a trace.

Mattson's stack algorithm, fitted to the replay's semantics (``replay/hitrate.py``):
each request matches the longest cached prefix of its chained keys (GET), then inserts
what is missing (PUT), and every block it matches or inserts is accessed at the request's
time, deepest block first. Order all blocks by their last access (the *LRU stack*; the
stack distance of a block is its 1-based position, most recent first).

- A request touches its prefix ``0..n-1`` from the last block to the first, and any
  request holding block ``k`` of a chain holds blocks ``0..k-1`` too, so a parent is
  always more recent than its child. Hence the top ``C`` of the stack is prefix-closed,
  and its least recent block is a leaf: evicting the deepest ready leaf of the oldest
  node (the index) is evicting the bottom of the stack (plain LRU).
- With ``evict_ratio = 0`` and ``evict_start_threshold = 1`` the tier evicts only what a
  PUT needs, keeping the request's own matched prefix (locked). So after every request
  the tier holds exactly the top ``C`` of the stack; a request longer than ``C`` keeps
  its first ``C`` blocks, which are also the top ``C``.
- So, with ``d_k`` the stack distance of block ``k`` of a request *before* its own
  touches (infinite if never seen), the hit blocks at capacity ``C`` are the longest
  prefix with ``d_0..d_k <= C``. Distances grow strictly along a request (a parent is
  more recent), so this is simply every block with ``d_k <= C``, and block ``k`` serves
  its tokens (``tokens_in(k, k+1)``, none below the GPU prefix cache's blocks) at every
  capacity ``C >= d_k``. The test checks this against replays at sample capacities.

Distances come in runs. An unbounded radix tree of block runs (like the tier index, no
eviction) records for each run the last request that touched it; request ``q``'s blocks
not touched since form a suffix ``a_q..n_q-1`` of its prompt. A Fenwick tree over
request slots counts those live blocks, so the run of request ``r`` last touched by
``q``, starting at block ``a_q``, has distances ``live(after q) + 1 + (k - a_q)``: one
O(log requests) query per run, none per block. Each run adds a range of distances to a
difference array; two cumulative sums give the hit tokens at every capacity.

The SSD and remote tiers sit behind the CPU tier at its configured size ``P``
(``num_cpu_blocks``), and the remote tier behind SSD at its configured size too. How the
planner places blocks (``core/planner.py``), with every op completed at once:

- A GET stages what SSD or remote serve into CPU (inclusive), and the PUT then writes
  through to each lower tier the blocks it lacks, *from CPU*: a lower tier gets the
  blocks the CPU tier took, ``0 .. min(n, P) - 1`` of an ``n``-block request, and the
  PUT's lookup touches the ones it holds. The GET's own lookups touch only blocks below
  that. So SSD (and the remote index) is plain LRU over the requests cut to their first
  ``P`` blocks, and its stack distances ``e_k`` are those of the cut requests.
- Cutting the requests leaves the top ``P`` of the stack as it is (a request longer than
  ``P`` holds the top ``P`` either way), so the CPU tier's prefix is still the blocks
  with ``e_k <= P``. SSD of ``S`` blocks holds ``e_k <= S`` and serves what the CPU
  lacks: the blocks with ``P < e_k <= S``; the curve adds each block from distance
  ``P + 1`` on.
- The remote store keeps what the remote index evicts (without
  ``remote_store_capacity_gb`` it keeps every block written), and a GET adopts from it
  the blocks beyond the index's prefix (``Planner.plan_get``'s ``remote_known``). A
  block was written once some request held it among its first ``min(P, R)`` blocks, so
  with ``R`` remote blocks the remote tier serves block ``k`` when it was seen before,
  ``k < R``, and neither CPU nor SSD holds it (``e_k > max(P, S)``): its distance on the
  remote curve is ``k + 1``, whatever the index evicted. A bounded store forgets in
  write order, not LRU, and a read it lost fails the whole staged GET (SSD part
  included), so the SSD and remote curves refuse it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flexkv_engine.config import ConfigError
from flexkv_engine.gpu_cache import GpuPrefixCache
from flexkv_engine.replay_input import ReplayInput

from .progress import cyclic_gc_paused, progress_bar

CURVE_SCHEMA_VERSION = 1
TIERS = ("cpu", "ssd", "remote")  # the tier whose capacity varies
POINT_KINDS = ("changes", "corners")
MAX_PLOT_POINTS = 4000


@dataclass(frozen=True, eq=False)  # eq=False: holds an array
class HitRateCurve:
    """Hit tokens of one tier at every capacity (in blocks of ``tokens_per_block``).

    ``hits[c]`` is the number of prompt tokens the tier serves with ``c`` blocks; past
    the end of the array it stays at ``hits[-1]`` (the infinite-cache value).
    ``behind_blocks`` holds the fixed capacities of the tiers in front of it (CPU for
    SSD; CPU and SSD for remote); ``distinct_blocks`` counts the blocks that can reach
    the tier (for SSD and remote: among the first ``num_cpu_blocks`` of a request).
    """

    tier: str
    tokens_per_block: int
    requests: int
    gets: int
    prompt_tokens: int
    distinct_blocks: int
    configured_blocks: int | None
    hits: np.ndarray  # int64, hits[0] == 0
    wall_s: float
    behind_blocks: dict[str, int] = field(default_factory=dict)

    def hit_tokens_at(self, capacity: int) -> int:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        return int(self.hits[min(capacity, len(self.hits) - 1)])

    def hit_rate_at(self, capacity: int) -> float:
        """Same arithmetic as ``CacheStats.hit_rate`` (tokens / prompt tokens)."""
        p = self.prompt_tokens
        return self.hit_tokens_at(capacity) / p if p else 0.0

    @property
    def max_capacity(self) -> int:
        """The smallest capacity with the infinite-cache hit rate."""
        return len(self.hits) - 1

    @property
    def max_hit_rate(self) -> float:
        return self.hit_rate_at(self.max_capacity)

    def capacity_for(self, fraction: float) -> int:
        """The smallest capacity reaching ``fraction`` of the infinite-cache hit tokens."""
        target = math.ceil(fraction * int(self.hits[-1]))
        return int(np.searchsorted(self.hits, target, side="left"))

    def capacities(self, kind: str = "changes") -> np.ndarray:
        """Capacities to list: 0 and the last, plus every capacity where the hit rate
        changes (``changes``), or only where its slope changes (``corners``: between two
        such capacities the hit tokens grow by the same amount per block, exactly)."""
        hits = self.hits
        if kind == "changes":
            inner = np.flatnonzero(np.diff(hits)) + 1
        elif kind == "corners":
            delta = np.diff(hits)  # delta[c] = hits[c + 1] - hits[c]
            inner = np.flatnonzero(np.diff(delta)) + 1
        else:
            raise ValueError(f"unknown point kind {kind!r}; choose from: {', '.join(POINT_KINDS)}")
        return _with_ends(inner.astype(np.int64), len(hits) - 1)

    def rates(self, capacities: np.ndarray) -> np.ndarray:
        idx = np.minimum(np.asarray(capacities, dtype=np.int64), len(self.hits) - 1)
        p = self.prompt_tokens
        return self.hits[idx] / p if p else np.zeros(len(idx))


def _with_ends(inner: np.ndarray, last: int) -> np.ndarray:
    """Sorted capacities ``inner`` (all in 1..last) with 0 and ``last`` added."""
    head = [0]
    tail = [last] if last > 0 and (inner.size == 0 or inner[-1] != last) else []
    return np.concatenate(
        (np.asarray(head, dtype=np.int64), inner, np.asarray(tail, dtype=np.int64))
    )


class _Run:
    """Blocks ``start .. end-1`` of the chain ``keys`` (a request's key list, not copied),
    last touched together by request ``owner``."""

    __slots__ = ("children", "end", "keys", "owner", "start")

    def __init__(self, keys: Sequence[int], start: int, end: int, owner: int) -> None:
        self.keys = keys
        self.start = start
        self.end = end
        self.owner = owner
        self.children: dict[int, _Run] = {}


def _split(parent: _Run, run: _Run, j: int) -> _Run:
    """Cut ``run`` before block ``j``; the new upper part takes its place under ``parent``."""
    keys = run.keys
    upper = _Run(keys, run.start, j, run.owner)
    upper.children[keys[j]] = run
    parent.children[keys[run.start]] = upper
    run.start = j
    return upper


def _walk(root: _Run, keys: Sequence[int], n: int) -> tuple[list[_Run], int]:
    """Runs holding the longest known prefix of ``keys`` (split to end there), and its length.

    The same matching as ``TierIndex._walk``: chained keys are equal up to ``i`` when they
    are equal at ``i``, so a run is compared by its last key, and a partial match bisected.
    """
    path: list[_Run] = []
    node = root
    pos = 0
    while pos < n:
        run = node.children.get(keys[pos])
        if run is None:
            break
        src, end = run.keys, run.end
        m = end if end <= n else n
        if src[m - 1] == keys[m - 1]:
            if m == end:
                path.append(run)
                node = run
                pos = end
                continue
            path.append(_split(node, run, m))
            return path, m
        lo, hi = pos, m - 1  # equal at lo, different at hi
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if src[mid] == keys[mid]:
                lo = mid
            else:
                hi = mid
        path.append(_split(node, run, lo + 1))
        return path, lo + 1
    return path, pos


def check_lru_config(inp: ReplayInput) -> None:
    """Refuse configs under which the tier is not the plain LRU the curve models."""
    cc = inp.config.cache_config
    plain = {
        "eviction_policy": (cc.eviction_policy, "lru"),
        "hit_reward_seconds": (cc.hit_reward_seconds, 0.0),
        "evict_ratio": (cc.evict_ratio, 0.0),
        "evict_start_threshold": (cc.evict_start_threshold, 1.0),
        "store_after_hits": (cc.store_after_hits, 0),
    }
    for key, (value, wanted) in plain.items():
        if value != wanted:
            raise ConfigError(
                f"the hit-rate curve models plain LRU and needs {key}={wanted}, got {value!r}",
                key_path=f"cache_config.{key}",
                source=inp.config.source,
                hint="replay each capacity instead (flexkv-sim sweep)",
            )


def check_lower_tier(inp: ReplayInput, tier: str) -> None:
    """Refuse what the SSD and remote curves cannot model: a bounded remote store.

    It forgets in write order, and a read of a block it forgot fails the whole staged
    part of a GET, so neither the remote nor the SSD tier is plain LRU then.
    """
    cc = inp.config.cache_config
    if cc.remote_store_capacity_gb is not None and (tier == "remote" or cc.enable_remote):
        raise ConfigError(
            f"the {tier} curve needs an unbounded remote store: a bounded one forgets in "
            "write order, not LRU, and a lost read fails the GET's SSD part too",
            key_path="cache_config.remote_store_capacity_gb",
            source=inp.config.source,
            hint="leave remote_store_capacity_gb unset, or replay each capacity "
            "instead (flexkv-sim sweep)",
        )


class StackDistances:
    """LRU stack distances of a trace's blocks, computed one run of blocks at a time.

    Requests are fed in trace order to :meth:`touch`; a request touches every block of
    its prompt, from the last to the first (the replay's order).
    """

    def __init__(self, requests: int) -> None:
        self._size = requests
        self._fenwick = [0] * (requests + 1)  # live blocks last touched by slot 1..size
        self._root = _Run((), 0, 0, 0)
        self._slot = 0
        self.live = 0  # distinct blocks seen so far

    def touch(self, keys: Sequence[int]) -> list[tuple[int, int, int]]:
        """The next request: ``(k1, k2, base)`` for each run of its known blocks.

        Blocks ``k1 .. k2-1`` had stack distances ``base + k`` before this request; the
        runs cover its longest known prefix, and the blocks after it were never seen.
        """
        fenwick, size = self._fenwick, self._size
        self._slot += 1
        r = self._slot
        n = len(keys)
        path, matched = _walk(self._root, keys, n)
        live = self.live
        runs = []
        i = 0
        while i < len(path):
            q = path[i].owner
            k1 = path[i].start
            while i < len(path) and path[i].owner == q:
                path[i].owner = r
                i += 1
            k2 = path[i - 1].end
            # Blocks touched after q's, then q's own from a_q = k1 (live before r).
            before = 0
            x = q
            while x:
                before += fenwick[x]
                x &= x - 1
            runs.append((k1, k2, live - before + 1 - k1))
            x = q
            gone = k2 - k1
            while x <= size:
                fenwick[x] -= gone
                x += x & -x
        if matched < n:
            parent = path[-1] if path else self._root
            parent.children[keys[matched]] = _Run(keys, matched, n, r)
        x = r
        while x <= size:
            fenwick[x] += n
            x += x & -x
        self.live = live + n - matched
        return runs


class _Tally:
    """Hit tokens by distance: ranges of full blocks and points of partial last blocks."""

    def __init__(self, tokens_per_block: int) -> None:
        self.tpb = tokens_per_block
        self.gets = 0
        self.prompt_tokens = 0
        self.starts: list[int] = []  # distances [start, end) of full-token blocks
        self.ends: list[int] = []
        self.point_d: list[int] = []  # distance and tokens of partial last blocks
        self.point_w: list[int] = []

    def add(self, runs: list[tuple[int, int, int]], first: int, tokens: int) -> None:
        """A GET whose blocks below ``first`` came from the GPU prefix cache."""
        self.gets += 1
        self.prompt_tokens += tokens
        full, partial = divmod(tokens, self.tpb)  # block `full` holds `partial` tokens
        for k1, k2, base in runs:
            lo = k1 if k1 > first else first
            hi = k2 if k2 < full else full
            if lo < hi:
                self.starts.append(base + lo)
                self.ends.append(base + hi)
            if partial and k1 <= full < k2 and full >= first:
                self.point_d.append(base + full)
                self.point_w.append(partial)

    def hits(self) -> np.ndarray:
        """Hit tokens at each capacity 0..max distance (a block hits from its distance on)."""
        s = np.asarray(self.starts, dtype=np.int64)
        e = np.asarray(self.ends, dtype=np.int64)
        pd_ = np.asarray(self.point_d, dtype=np.int64)
        top = max(int(e.max()) if e.size else 0, int(pd_.max()) + 1 if pd_.size else 0)
        count = np.bincount(s, minlength=top + 1) - np.bincount(e, minlength=top + 1)
        delta = np.cumsum(count) * self.tpb  # tokens gained when the capacity reaches d
        if pd_.size:
            np.add.at(delta, pd_, np.asarray(self.point_w, dtype=np.int64))
        hits = np.cumsum(delta[: max(top, 1)])
        hits[0] = 0  # no block has distance 0
        return hits


def hit_rate_curve(
    inp: ReplayInput, *, tier: str = "cpu", progress: bool | None = None
) -> HitRateCurve:
    """The hit tokens of ``tier`` at every capacity, as ``replay_hitrate`` would count them.

    ``cpu``: with an SSD or remote tier enabled the CPU tier still holds the same blocks
    (it gets every block a request matches or inserts), so the curve is its share of the
    prompt tokens (``hit_rate_by_tier['cpu']``). ``ssd``: SSD's share with the CPU tier
    at ``num_cpu_blocks``, whether or not the config enables SSD. ``remote``: the remote
    tier's share behind CPU and SSD at their configured sizes (SSD off: none). See the
    module docstring. Raises ConfigError for a config that is not plain LRU (see
    :func:`check_lru_config`) or, for SSD and remote, has a bounded remote store.
    """
    if tier not in TIERS:
        raise ConfigError(
            f"unknown tier {tier!r}; choose from: {', '.join(TIERS)}", key_path="tier"
        )
    check_lru_config(inp)
    config = inp.config
    cc = config.cache_config
    tpb = cc.tokens_per_block
    assert tpb is not None
    behind: dict[str, int] = {}
    cut = floor = 0  # cut: blocks of a request that reach the tier (0: all of them)
    if tier != "cpu":
        check_lower_tier(inp, tier)
        cut = floor = behind["cpu"] = cc.tier_blocks("cpu")
        if tier == "remote":
            behind["ssd"] = cc.tier_blocks("ssd") if cc.enable_ssd else 0
            floor = max(floor, behind["ssd"])
    requests = inp.requests
    num_gpu = config.serving_config.num_gpu_blocks
    gpu = GpuPrefixCache(num_gpu) if num_gpu > 0 else None
    distances = StackDistances(len(requests))
    tally = _Tally(tpb)
    touch, add = distances.touch, tally.add
    bar = progress_bar(len(requests), "curve", progress)
    begin = time.perf_counter()
    with cyclic_gc_paused():
        for i, req in enumerate(requests):
            keys = req.keys
            first, handle = gpu.acquire(keys, req.t) if gpu is not None else (0, None)
            runs = touch(keys if not cut or len(keys) <= cut else keys[:cut])
            if req.op == "get":
                if tier != "cpu":
                    runs = _behind(runs, floor, tier == "remote")
                add(runs, first, req.num_tokens)
            if gpu is not None:
                gpu.release(keys, handle, req.t)
            if i & 1023 == 1023:
                bar.update(1024)
    hits = tally.hits()
    wall_s = time.perf_counter() - begin
    bar.update(len(requests) & 1023)
    bar.close()
    return HitRateCurve(
        tier=tier,
        tokens_per_block=tpb,
        requests=len(requests),
        gets=tally.gets,
        prompt_tokens=tally.prompt_tokens,
        distinct_blocks=distances.live,
        configured_blocks=cc.tier_blocks(tier) if cc.tier_enabled(tier) else None,
        hits=hits,
        wall_s=wall_s,
        behind_blocks=behind,
    )


def _behind(
    runs: list[tuple[int, int, int]], floor: int, by_position: bool
) -> list[tuple[int, int, int]]:
    """The runs' blocks that the tiers in front lack (distance above ``floor``); with
    ``by_position``, each block's distance becomes its position plus one (the remote
    tier: a block seen before hits once the tier holds that many blocks)."""
    out = []
    for k1, k2, base in runs:
        lo = floor + 1 - base  # base + k > floor from block lo on
        lo = max(lo, k1)
        if lo < k2:
            out.append((lo, k2, 1 if by_position else base))
    return out


# ---- output -----------------------------------------------------------------------------
def curve_table(curve: HitRateCurve, kind: str = "changes") -> tuple[np.ndarray, np.ndarray]:
    """``(capacity_blocks, hit_rate)`` arrays of the listed capacities (see ``capacities``)."""
    caps = curve.capacities(kind)
    return caps, curve.rates(caps)


def curve_summary(curve: HitRateCurve, kind: str = "changes") -> dict[str, Any]:
    """The curve as JSON-ready data: provenance, key capacities and the points."""
    caps, rates = curve_table(curve, kind)
    return {
        "schema_version": CURVE_SCHEMA_VERSION,
        "tier": curve.tier,
        "tokens_per_block": curve.tokens_per_block,
        "requests": curve.requests,
        "gets": curve.gets,
        "prompt_tokens": curve.prompt_tokens,
        "distinct_blocks": curve.distinct_blocks,
        "max_hit_rate": curve.max_hit_rate,
        "max_capacity_blocks": curve.max_capacity,
        "capacity_for": {  # the least capacity reaching p% of the infinite-cache hits
            f"{p}%": _point(curve, curve.capacity_for(p / 100)) for p in (50, 90, 99)
        },
        "configured_blocks": curve.configured_blocks,
        "configured_hit_rate": (
            None if curve.configured_blocks is None else curve.hit_rate_at(curve.configured_blocks)
        ),
        "behind_blocks": dict(curve.behind_blocks),
        "wall_s": curve.wall_s,
        "points_kind": kind,
        "points": [
            {"capacity_blocks": int(c), "hit_rate": float(h)}
            for c, h in zip(caps.tolist(), rates.tolist(), strict=True)
        ],
    }


def _point(curve: HitRateCurve, capacity: int) -> dict[str, Any]:
    return {"capacity_blocks": capacity, "hit_rate": curve.hit_rate_at(capacity)}


def plot_capacities(curve: HitRateCurve, max_points: int = MAX_PLOT_POINTS) -> np.ndarray:
    """Capacities to draw: every corner when few, else evenly spaced on linear and log axes."""
    corners = curve.capacities("corners")
    if corners.size <= max_points:
        return corners
    top = curve.max_capacity
    half = max_points // 2
    lin = np.linspace(0, top, half)
    log = np.geomspace(1, top, half)
    picked = np.concatenate((lin, log)).round().astype(np.int64)
    picked.sort()
    keep = np.concatenate(([True], picked[1:] != picked[:-1]))
    return picked[keep]


def write_curve_dir(out: Path, curve: HitRateCurve, kind: str = "changes", **meta: Any) -> Path:
    """``curve.csv`` (the table), ``curve.json`` (summary and points), ``curve.html``."""
    import json

    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = curve_summary(curve, kind)
    summary.update(meta)
    caps, rates = curve_table(curve, kind)
    frame = pd.DataFrame({"capacity_blocks": caps, "hit_rate": rates})
    frame.to_csv(out / "curve.csv", index=False)
    (out / "curve.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot = plot_capacities(curve)
    from .report.curve_page import write_curve_page

    write_curve_page(out / "curve.html", plot, curve.rates(plot), summary)
    return out
