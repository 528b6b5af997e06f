"""Synthetic workloads: determinism, chained keys, prefix reuse, arrivals, parameters."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexkv_engine.config import ConfigError
from flexkv_engine.core.keys import block_keys
from flexkv_engine.trace import RequestRecord, load_requests
from flexkv_sim.workloads import (
    WORKLOADS,
    BlockChain,
    Context,
    arrival_times,
    describe,
    generate,
    make_workload,
    trace_stats,
    write_trace,
)

ALL = sorted(WORKLOADS)


def records(workload: str, n: int = 200, seed: int = 1, **kwargs) -> list[RequestRecord]:
    kwargs.setdefault("rate", 4.0)
    _, recs = generate(workload, requests=n, seed=seed, **kwargs)
    return list(recs)


def hit_rate(recs: list[RequestRecord], tpb: int = 16) -> float:
    return trace_stats(recs, tpb).infinite_cache_hit_rate


def sessions(recs: list[RequestRecord]) -> dict[str, list[RequestRecord]]:
    """Requests grouped by session, in turn order (ids read <prefix><session>-<turn>)."""
    out: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in recs:
        sid, _, turn = r.request_id.rpartition("-")
        out[sid].append(r)
        assert int(turn) == len(out[sid]) - 1
    return out


# ------------------------------------------------------------------ every workload


@pytest.mark.parametrize("workload", ALL)
def test_same_seed_same_bytes_other_seed_other_bytes(workload, tmp_path):
    def write(name: str, seed: int) -> bytes:
        header, recs = generate(workload, requests=60, seed=seed, rate=2.0)
        write_trace(tmp_path / name, header, recs)
        return (tmp_path / name).read_bytes()

    first = write("a.jsonl", 7)
    assert write("b.jsonl", 7) == first
    assert write("c.jsonl", 8) != first
    gz = write("d.jsonl.gz", 7)
    assert gz[:2] == b"\x1f\x8b"
    assert write("e.jsonl.gz", 7) == gz


@pytest.mark.parametrize("workload", ALL)
def test_trace_reads_back_as_generated(workload, tmp_path):
    header, recs = generate(workload, requests=80, seed=3, rate=4.0, namespace="tenant-a")
    recs = list(recs)
    write_trace(tmp_path / "t.jsonl", header, recs)
    read_header, read = load_requests(tmp_path / "t.jsonl")
    assert read == recs
    assert read_header.tokens_per_block == 16
    meta = read_header.meta
    assert (meta["workload"], meta["seed"], meta["namespace"]) == (workload, 3, "tenant-a")
    assert meta["params"] == {name: default for name, default, _ in describe(workload)}
    assert len({r.request_id for r in recs}) == len(recs)
    assert all(r.op == "get" and r.namespace == "tenant-a" for r in recs)
    assert all(r.output_tokens >= 1 for r in recs)
    times = [r.t for r in recs]
    assert times[0] == 0.0
    assert times == sorted(times)


@pytest.mark.parametrize("workload", ALL)
@pytest.mark.parametrize("tpb", [16, 7])
def test_keys_are_chained(workload, tpb):
    """A key always sits at the same position after the same key, so requests that share
    key i share keys 0..i."""
    where: dict[int, tuple[int, int | None]] = {}
    for r in records(workload, 150, tokens_per_block=tpb):
        assert len(r.keys) == -(-r.num_tokens // tpb)
        prev = None
        for i, key in enumerate(r.keys):
            assert where.setdefault(key, (i, prev)) == (i, prev)
            prev = key


@pytest.mark.parametrize("workload", ALL)
def test_partial_last_blocks_never_falsely_match(workload):
    """A partial last block's key appears elsewhere only in an identical prompt."""
    tpb = 16
    recs = records(workload, 150)
    by_key: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in recs:
        for key in r.keys:
            by_key[key].append(r)
    partial = [r for r in recs if r.num_tokens % tpb]
    assert partial
    for r in partial:
        for other in by_key[r.keys[-1]]:
            assert other.num_tokens == r.num_tokens
            assert other.keys == r.keys


@pytest.mark.parametrize("workload", ALL)
def test_namespace_changes_every_key_not_the_content(workload):
    plain = records(workload, 30)
    tenant = records(workload, 30, namespace="t1")
    assert not {k for r in plain for k in r.keys} & {k for r in tenant for k in r.keys}
    assert [r.num_tokens for r in plain] == [r.num_tokens for r in tenant]


@pytest.mark.parametrize("workload", ALL)
def test_fast_keys_share_exactly_where_token_keys_do(workload):
    """The fast path names the same equal-prefix structure as hashing real tokens."""
    fast = records(workload, 60, key_mode="fast")
    real = records(workload, 60, key_mode="tokens")
    f2t: dict[int, int] = {}
    t2f: dict[int, int] = {}
    for a, b in zip(fast, real, strict=True):
        assert (a.request_id, a.num_tokens, a.t) == (b.request_id, b.num_tokens, b.t)
        for fk, tk in zip(a.keys, b.keys, strict=True):
            assert f2t.setdefault(fk, tk) == tk
            assert t2f.setdefault(tk, fk) == fk


@pytest.mark.parametrize("workload", ALL)
def test_defaults_are_documented_and_checked(workload):
    spec = make_workload(workload)
    for name, default, help_text in describe(workload):
        assert help_text
        assert getattr(spec, name) == default
    with pytest.raises(ConfigError, match=rf"{workload}\.nope: unknown parameter; valid"):
        make_workload(workload, {"nope": 1})


# ------------------------------------------------------------------ the key chain


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 70), min_size=1, max_size=8),
    tpb=st.integers(1, 33),
    namespace=st.one_of(st.none(), st.text(max_size=5)),
)
def test_token_mode_keys_equal_the_engines_keys(lengths, tpb, namespace):
    ctx = Context("test", 0, tpb, namespace, "tokens")
    chain = ctx.empty()
    tokens: list[int] = []
    for i, n in enumerate(lengths):
        seg = ctx.segment(f"s{i}", n)
        chain.append(seg)
        tokens.extend(seg.tokens())
        assert chain.request_keys() == block_keys(tokens, tpb, namespace)
    assert chain.num_tokens == len(tokens)


@pytest.mark.parametrize("mode", ["fast", "tokens"])
def test_partial_block_key_differs_from_the_full_block(mode):
    ctx = Context("test", 0, 16, None, mode)
    a, b = ctx.segment("a", 20), ctx.segment("b", 12)
    chain = ctx.empty()
    chain.append(a)
    partial = chain.request_keys()
    grown = chain.copy()
    grown.append(b)
    full = grown.request_keys()
    assert len(partial) == len(full) == 2
    assert partial[0] == full[0]
    assert partial[1] != full[1]
    assert chain.request_keys() == partial  # the copy left the original alone


def test_copy_and_prefix_cache_give_the_same_keys():
    ctx = Context("test", 0, 16)
    segs = [ctx.segment(f"s{i}", n) for i, n in enumerate([40, 5, 100, 16])]
    direct = BlockChain(16)
    for s in segs:
        direct.append(s)
    assert ctx.prefix(segs[:2]).request_keys() == block_prefix(segs[:2])
    assert ctx.prefix(segs).request_keys() == direct.request_keys()


def block_prefix(segs):
    chain = BlockChain(16)
    for s in segs:
        chain.append(s)
    return chain.request_keys()


# ------------------------------------------------------------------ workload shapes


def test_multiturn_reuses_prefixes_and_grows_by_turn():
    recs = records("multiturn", 300)
    assert hit_rate(recs) > 0.6
    grew = 0
    for turns in sessions(recs).values():
        for before, after in itertools.pairwise(turns):
            full = before.num_tokens // 16
            assert after.keys[:full] == before.keys[:full]
            assert after.num_tokens > before.num_tokens + before.output_tokens
            grew += 1
    assert grew > 50


def test_agent_contexts_grow_to_tens_of_thousands():
    recs = records("agent", 300)
    assert hit_rate(recs) > 0.85
    assert max(r.num_tokens for r in recs) > 30_000
    long_tasks = 0
    for steps in sessions(recs).values():
        sizes = [r.num_tokens for r in steps]
        assert sizes == sorted(sizes)
        long_tasks += len(steps) >= 10
    assert long_tasks >= 5


def test_rag_reuses_system_prompt_and_popular_documents():
    recs = records("rag", 400)
    rate = hit_rate(recs)
    system_only = 400 / statistics.mean(r.num_tokens for r in recs)
    assert system_only < rate < 0.9
    first = recs[0].keys[: 400 // 16]
    assert all(r.keys[: 400 // 16] == first for r in recs)
    # Sorting retrieved documents by popularity shares longer prefixes.
    assert hit_rate(records("rag", 400, doc_order="popularity")) > rate


def test_multiturn_parameters_take_effect():
    short = records("multiturn", 200, turns=1.0)
    assert all(r.request_id.endswith("-0") for r in short)
    small = records(
        "multiturn",
        50,
        system_tokens=64,
        system_sigma=0.0,
        user_tokens=10,
        user_sigma=0.0,
        turns=1.0,
    )
    assert {r.num_tokens for r in small} == {74}


# ------------------------------------------------------------------ arrivals


@pytest.mark.parametrize(
    ("arrival", "burstiness"),
    [("poisson", None), ("bursty", 2.0), ("bursty", 4.0), ("bursty", 0.5)],
)
def test_arrival_rate_and_burstiness(arrival, burstiness):
    from random import Random

    n, rate = 100_000, 5.0
    times = list(arrival_times(n, Random(11), rate, arrival, burstiness))
    assert times[0] == 0.0
    assert times == sorted(times)
    assert (n - 1) / times[-1] == pytest.approx(rate, rel=0.03)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(burstiness or 1.0, rel=0.1)


def test_bursty_traces_are_burstier_than_poisson():
    def cv(recs):
        gaps = [b.t - a.t for a, b in itertools.pairwise(recs)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    poisson = records("rag", 3000, rate=10.0)
    bursty = records("rag", 3000, rate=10.0, arrival="bursty")
    assert cv(bursty) > 1.5 > cv(poisson)
    assert (len(poisson) - 1) / poisson[-1].t == pytest.approx(10.0, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"burstiness": 2.0}, "applies to the bursty arrival process only"),
        ({"arrival": "steady"}, "unknown arrival process 'steady'"),
        ({"rate": 0.0}, "rate must be a positive number"),
        ({"tokens_per_block": 0}, "tokens_per_block: must be an integer"),
        ({"key_mode": "slow"}, "key_mode: must be one of fast, tokens"),
        ({"turns": 0.5}, r"multiturn\.turns: must be >= 1"),
        ({"think_time": 0}, r"multiturn\.think_time: must be > 0"),
        ({"max_turns": 2.5}, r"multiturn\.max_turns: must be an integer"),
    ],
)
def test_bad_arguments_fail_before_any_record(kwargs, message):
    args = {"requests": 10, "seed": 1, "rate": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate("multiturn", **args)


def test_unknown_workload_and_cross_parameter_checks():
    with pytest.raises(ConfigError, match="unknown workload 'chat'; choose from: agent"):
        generate("chat", requests=1, seed=1, rate=1.0)
    with pytest.raises(ConfigError, match=r"rag\.top_k: must be <= documents \(3\)"):
        make_workload("rag", {"documents": 3})
    with pytest.raises(ConfigError, match=r"rag\.documents: must be <= 1000000"):
        make_workload("rag", {"documents": 10**7})
    with pytest.raises(ConfigError, match=r"rag\.doc_order: must be one of retrieval"):
        make_workload("rag", {"doc_order": "random"})
