"""``flexkv-sim trace``: generate, stats, convert, and their error exits."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from flexkv_engine.trace import RequestRecord, TraceHeader, TraceWriter, load_requests
from flexkv_sim.cli import main


def run(*args: str):
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(main, ["trace", *map(str, args)])


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fails(*args: str, match: str):
    """Exit status 2 with one line on stderr naming the problem, and no traceback."""
    result = run(*args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert match in result.stderr
    return result


# ------------------------------------------------------------------ generate


def test_generate_writes_the_same_file_twice(tmp_path):
    args = ["generate", "--workload", "multiturn", "--requests", 40, "--seed", 5, "--rate", 2]
    first = ok(*args, "-o", tmp_path / "a.jsonl")
    assert first.output.count("\n") == 1
    assert "wrote 40 multiturn requests" in first.output
    ok(*args, "-o", tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    header, requests = load_requests(tmp_path / "a.jsonl")
    assert len(requests) == 40
    assert header.meta["rate"] == 2.0


def test_generate_options_reach_the_trace(tmp_path):
    out = tmp_path / "rag.jsonl.gz"
    ok(
        "generate",
        "--workload",
        "rag",
        "--requests",
        30,
        "--seed",
        2,
        "--arrival",
        "bursty",
        "--burstiness",
        3,
        "--block-size",
        32,
        "--namespace",
        "lora-7",
        "--param",
        "top_k=2",
        "--param",
        "doc_order=popularity",
        "-o",
        out,
    )
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    header, requests = load_requests(out)
    assert header.tokens_per_block == 32
    assert header.meta["arrival"] == "bursty"
    assert header.meta["burstiness"] == 3.0
    assert header.meta["params"]["top_k"] == 2
    assert header.meta["params"]["doc_order"] == "popularity"
    assert {r.namespace for r in requests} == {"lora-7"}


def test_generate_help_lists_every_parameter():
    result = ok("generate", "--help")
    for name in ("think_time", "observation_tokens", "doc_zipf", "--burstiness"):
        assert name in result.output


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--param", "turnz=3"], "multiturn.turnz: unknown parameter"),
        (["--param", "turns=many"], "multiturn.turns: must be a number, got 'many'"),
        (["--param", "turns"], "expected KEY=VALUE"),
        (["--param", "turns=0.5"], "multiturn.turns: must be >= 1"),
        (["--burstiness", "2"], "applies to the bursty arrival process only"),
    ],
)
def test_generate_bad_parameters_exit_2(tmp_path, extra, match):
    out = tmp_path / "x.jsonl"
    fails(
        "generate",
        "--workload",
        "multiturn",
        "--requests",
        5,
        "--seed",
        1,
        *extra,
        "-o",
        out,
        match=match,
    )
    assert not out.exists()


def test_generate_bad_options_exit_2(tmp_path):
    for args in (
        ["--workload", "chat"],
        ["--workload", "rag", "--rate", "0"],
        ["--workload", "rag", "--requests", "0"],
    ):
        result = run("generate", "--requests", 5, "--seed", 1, *args, "-o", tmp_path / "x")
        assert result.exit_code == 2
        assert "Traceback" not in result.output + result.stderr


def test_generate_into_a_missing_directory_exits_2(tmp_path):
    fails(
        "generate",
        "--workload",
        "rag",
        "--requests",
        5,
        "--seed",
        1,
        "-o",
        tmp_path / "no" / "x.jsonl",
        match="No such file or directory",
    )


# ------------------------------------------------------------------ stats


def handmade_trace(path):
    """Requests out of time order in the file; stats must take them by time."""
    rows = [
        RequestRecord(0.0, "get", "r1", 10, [1, 2, 3], None, 5),
        RequestRecord(2.0, "get", "r3", 14, [1, 2, 4, 9], None, 0),  # after r2 in time
        RequestRecord(1.0, "get", "r2", 9, [1, 2, 4], None, 3),
        RequestRecord(2.5, "put", "p1", 8, [6, 7]),
        RequestRecord(3.0, "get", "r4", 10, [1, 2, 3], None, 2),
        RequestRecord(4.0, "get", "r5", 12, [6, 7, 8], None, 1),
    ]
    with TraceWriter(path, TraceHeader(1, "handmade", 4)) as w:
        for r in rows:
            w.write(r)


def test_stats_of_a_handmade_trace_are_exact(tmp_path):
    handmade_trace(tmp_path / "t.jsonl")
    stats = json.loads(ok("stats", tmp_path / "t.jsonl", "--json").output)
    # Hits in time order: r1 0, r2 2 blocks = 8, r3 3 blocks = 12, (p1 adds 6, 7),
    # r4 3 blocks capped at its 10 tokens, r5 2 blocks = 8.
    assert stats == {
        "requests": 6,
        "gets": 5,
        "puts": 1,
        "prompt_tokens": 55,
        "output_tokens": 11,
        "unique_blocks": 8,
        "mean_prompt_tokens": 11.0,
        "max_prompt_tokens": 14,
        "time_span_s": 4.0,
        "tokens_per_block": 4,
        "infinite_cache_hit_tokens": 38,
        "infinite_cache_hit_rate": 38 / 55,
    }
    text = ok("stats", tmp_path / "t.jsonl").output
    assert "infinite-cache hit rate 0.6909" in text
    assert "6  (5 get, 1 put)" in text


def test_stats_reads_mooncake_with_its_block_size(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [0, 1]}\n'
        '{"timestamp": 500, "input_length": 700, "output_length": 10, "hash_ids": [0, 2]}\n'
    )
    stats = json.loads(ok("stats", path, "--json").output)
    assert (stats["tokens_per_block"], stats["infinite_cache_hit_tokens"]) == (512, 512)
    assert stats["time_span_s"] == 0.5
    stats = json.loads(ok("stats", path, "--json", "--block-size", "600").output)
    assert stats["infinite_cache_hit_tokens"] == 600


def test_stats_of_a_generated_trace_match_the_library(tmp_path):
    from flexkv_sim.workloads import generate, trace_stats

    out = tmp_path / "g.jsonl"
    ok("generate", "--workload", "multiturn", "--requests", 100, "--seed", 4, "-o", out)
    _, recs = generate("multiturn", requests=100, seed=4, rate=4.0)
    expected = trace_stats(list(recs), 16)
    stats = json.loads(ok("stats", out, "--json").output)
    assert stats["infinite_cache_hit_rate"] == expected.infinite_cache_hit_rate
    assert stats["unique_blocks"] == expected.unique_blocks


def test_stats_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "header", "format": "flexkv-twin-trace", "version": 9}\n')
    fails("stats", bad, match="unsupported trace schema version 9")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    fails("stats", garbage, match="cannot tell the trace format")
    handmade_trace(tmp_path / "t.jsonl")
    fails("stats", tmp_path / "t.jsonl", "--block-size", "8", match="block_size=8")
    result = run("stats", tmp_path / "missing.jsonl")
    assert result.exit_code == 2
    assert "Traceback" not in result.output + result.stderr


# ------------------------------------------------------------------ convert

MOONCAKE_ROWS = [
    {"timestamp": 0, "input_length": 1100, "output_length": 12, "hash_ids": [0, 1, 2]},
    {"timestamp": 1500, "input_length": 512, "output_length": 7, "hash_ids": [0]},
    {"timestamp": 2001, "input_length": 1025, "output_length": 0, "hash_ids": [0, 1, 5]},
]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mooncake_round_trip_keeps_every_row(tmp_path, suffix):
    src = tmp_path / "mooncake.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in MOONCAKE_ROWS))
    ours = tmp_path / f"ours.jsonl{suffix}"
    back = tmp_path / f"back.jsonl{suffix}"
    result = ok("convert", src, "-o", ours)
    assert "wrote 3 records (flexkv, 512-token blocks)" in result.output
    header, requests = load_requests(ours)
    assert header.meta["original_format"] == "mooncake"
    assert [r.keys for r in requests] == [row["hash_ids"] for row in MOONCAKE_ROWS]
    ok("convert", ours, "-o", back, "--to", "mooncake")
    opener = gzip.open if suffix else open
    with opener(back, "rt") as f:
        rows = [json.loads(line) for line in f]
    assert rows == MOONCAKE_ROWS
    assert not list(tmp_path.glob(".*partial*"))


def test_generated_trace_to_mooncake_and_back(tmp_path):
    ours = tmp_path / "g.jsonl"
    ok("generate", "--workload", "agent", "--requests", 20, "--seed", 1, "-o", ours)
    moon = tmp_path / "g.mooncake.jsonl"
    result = ok("convert", ours, "-o", moon, "--to", "mooncake")
    assert "16-token blocks" in result.output
    again = tmp_path / "again.jsonl"
    ok("convert", moon, "--block-size", "16", "-o", again)
    _, original = load_requests(ours)
    _, converted = load_requests(again)
    assert [(r.keys, r.num_tokens, r.output_tokens) for r in converted] == [
        (r.keys, r.num_tokens, r.output_tokens) for r in original
    ]
    assert [r.t for r in converted] == pytest.approx([r.t for r in original], abs=1e-9)


def test_convert_errors_exit_2(tmp_path):
    handmade_trace(tmp_path / "t.jsonl")  # holds a PUT
    out = tmp_path / "m.jsonl"
    fails(
        "convert", tmp_path / "t.jsonl", "-o", out, "--to", "mooncake", match="request p1 is a PUT"
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))
    fails(
        "convert",
        tmp_path / "t.jsonl",
        "-o",
        tmp_path / "t.jsonl",
        match="would overwrite the input",
    )
    fails(
        "convert",
        tmp_path / "t.jsonl",
        "-o",
        out,
        "--format",
        "mooncake",
        match="missing required field 'timestamp'",
    )
    result = run("convert", tmp_path / "t.jsonl", "-o", out, "--to", "csv")
    assert result.exit_code == 2


def test_infinite_cache_hit_rate_matches_a_replay_with_room_for_everything(tmp_path):
    out = tmp_path / "g.jsonl"
    ok("generate", "--workload", "multiturn", "--requests", 150, "--seed", 9, "-o", out)
    stats = json.loads(ok("stats", out, "--json").output)
    result = CliRunner().invoke(main, ["replay", str(out), "--json"])
    assert result.exit_code == 0, result.output
    replay = json.loads(result.stdout)
    assert replay["prompt_tokens"] == stats["prompt_tokens"]
    assert replay["hit_rate"] == pytest.approx(stats["infinite_cache_hit_rate"], abs=1e-12)


def test_sample_trace_is_what_its_readme_command_makes(tmp_path):
    """traces/README.md's command regenerates traces/sample_multiturn.jsonl exactly."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sample = root / "traces" / "sample_multiturn.jsonl"
    readme = (root / "traces" / "README.md").read_text()
    command = "trace generate --workload multiturn --requests 300 --seed 1 --rate 4 "
    command += "--param system_tokens=512 -o traces/sample_multiturn.jsonl"
    assert f"flexkv-sim {command}" in readme
    args = command.split()[1:-1]  # drop "trace" (run adds it) and the output path
    ok(*args, tmp_path / "sample.jsonl")
    assert (tmp_path / "sample.jsonl").read_bytes() == sample.read_bytes()
