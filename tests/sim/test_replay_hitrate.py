"""``flexkv-sim replay --mode hitrate`` on the public Mooncake conversation trace."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
from click.testing import CliRunner

from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.trace import public_traces_dir
from flexkv_sim.cli import main
from flexkv_sim.replay import replay_hitrate

CONVERSATION = public_traces_dir() / "conversation_trace.jsonl"
needs_trace = pytest.mark.skipif(
    not CONVERSATION.exists(), reason=f"public trace not found at {CONVERSATION}"
)

# Capacities of 1e6, 3e6 and 1e7 tokens at 512-token blocks, and more blocks than the
# trace has (182,790 distinct); the hit rates of a plain LRU list in which each request
# touches its blocks from the last to the first.
EXPECTED = {1953: 0.0543, 5859: 0.1387, 19531: 0.2908, 1_000_000: 0.3736}


@pytest.fixture(scope="module")
def conversation():
    return prepare_replay(CONVERSATION)


@needs_trace
@pytest.mark.parametrize(("blocks", "hit_rate"), sorted(EXPECTED.items()))
def test_hit_rates_match_the_lru_oracle(conversation, blocks: int, hit_rate: float) -> None:
    inp = prepare_replay(CONVERSATION, overrides=[f"cache_config.num_cpu_blocks={blocks}"])
    result = replay_hitrate(inp, progress=False)
    assert result.planner.stats.hit_rate == pytest.approx(hit_rate, abs=0.0005)
    assert result.planner.tiers["cpu"].used <= blocks


def plain_lru(requests, capacity: int, block: int) -> list[int]:
    """Hit tokens per request of a plain LRU list touched from the last block to the first."""
    lru: OrderedDict[int, None] = OrderedDict()
    out = []
    for req in requests:
        hits = 0
        for key in req.keys:
            if key not in lru:
                break
            hits += 1
        out.append(min(hits * block, req.num_tokens))
        for key in reversed(req.keys):
            lru[key] = None
            lru.move_to_end(key)
        while len(lru) > capacity:
            lru.popitem(last=False)
    return out


@needs_trace
def test_per_request_hits_equal_the_oracle_request_by_request(conversation) -> None:
    requests = conversation.requests[:3000]
    inp = prepare_replay(CONVERSATION, overrides=["cache_config.num_cpu_blocks=900"])
    inp = type(inp)(**{**inp.__dict__, "requests": requests})
    records = replay_hitrate(inp, progress=False).records
    assert [r[6] for r in records] == plain_lru(requests, 900, 512)


@needs_trace
def test_cli_prints_the_summary_shape(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "replay",
            str(CONVERSATION),
            "--set",
            "cache_config.num_cpu_blocks=5859",
            "--json",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requests"] == 12031
    assert summary["hit_rate"] == pytest.approx(0.1387, abs=0.0005)
    assert set(summary["hit_rate_by_tier"]) == {"gpu", "cpu", "ssd", "remote"}
    assert summary["hit_rate_by_tier"]["cpu"] == summary["hit_rate"]
    assert summary["load_s"] > 0 and summary["wall_s"] > 0
    assert summary["provenance"]["config_hash"]
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["hit_rate"] == summary["hit_rate"]
    lines = (tmp_path / "run" / "requests.csv").read_text().splitlines()
    assert len(lines) == 12032 and lines[0].startswith("request_id,t,op")


def test_bad_config_exits_2_without_traceback(tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n')
    result = CliRunner().invoke(
        main, ["replay", str(trace), "--set", "cache_config.evict_ratio=1.5"]
    )
    assert result.exit_code == 2
    assert "cache_config.evict_ratio" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_trace_names_the_line(tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n'
        '{"timestamp": 5, "input_length": -3, "output_length": 1, "hash_ids": [1]}\n'
    )
    result = CliRunner().invoke(main, ["replay", str(trace)])
    assert result.exit_code == 2
    assert "t.jsonl:2" in result.stderr


def test_finer_block_size_than_recorded_is_refused(tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n')
    result = CliRunner().invoke(
        main, ["replay", str(trace), "--set", "cache_config.tokens_per_block=256"]
    )
    assert result.exit_code == 2
    assert "finer than the trace's recorded block size 512" in result.stderr
