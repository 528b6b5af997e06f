"""The tracer's own file (``enable_trace``, ``trace_file_path``) replays; empty traces are
refused; ``--out`` and ``trace_file_path`` are both written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner

from flexkv_engine.cli import main as run_main
from flexkv_engine.trace import RequestRecord, read_trace
from flexkv_sim.cli import main as sim_main
from flexkv_sim.workloads import generate, write_trace

SETS = ["model_config.num_layers=1", "model_config.num_kv_heads=1",
        "model_config.head_size=16", "model_config.dtype=float16",
        "cache_config.num_cpu_blocks=150", "cache_config.enable_trace=true"]
HEADER = ('{"type":"header","format":"flexkv-twin-trace","version":1,"source":"test",'
          '"tokens_per_block":16}\n')


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("t") / "chat.jsonl"
    header, records = generate("multiturn", requests=80, seed=3, rate=4.0)
    write_trace(path, header, records)
    return path


def _replay(chat: Path, traced: Path, *extra: str):
    args = ["replay", str(chat), "--speed", "max", "--json", *extra]
    for s in [*SETS, f"cache_config.trace_file_path={traced}"]:
        args += ["--set", s]
    result = CliRunner().invoke(run_main, args)
    assert result.exit_code == 0, result.output
    return result


def test_the_tracers_file_replays_with_the_engines_hits(chat, tmp_path) -> None:
    traced = tmp_path / "flexkv_trace.jsonl"
    engine = json.loads(_replay(chat, traced).stdout)
    records = list(read_trace(traced))
    assert sum(isinstance(r, RequestRecord) for r in records) == engine["requests"] == 80
    twin = CliRunner().invoke(sim_main, ["replay", str(traced), "--json", "--set",
                                         "cache_config.num_cpu_blocks=150"])
    assert twin.exit_code == 0, twin.output
    replayed = json.loads(twin.stdout)
    assert replayed["requests"] == 80
    assert replayed["hit_tokens_by_tier"] == engine["hit_tokens_by_tier"]


def test_out_and_trace_file_path_are_both_written(chat, tmp_path) -> None:
    traced = tmp_path / "flexkv_trace.jsonl"
    result = _replay(chat, traced, "--out", str(tmp_path / "run"))
    assert traced.read_bytes() == (tmp_path / "run" / "trace.jsonl").read_bytes()
    assert f"in {traced}" in result.stderr


@pytest.mark.parametrize("command", [["replay"], ["trace", "stats"]])
def test_a_trace_without_requests_is_an_error(tmp_path, command) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text(HEADER)
    result = CliRunner().invoke(sim_main, [*command, str(empty)])
    assert result.exit_code == 2
    assert "no request records" in result.output


def test_the_terminal_summary_is_the_twins_table(chat, tmp_path) -> None:
    args = ["replay", str(chat), "--speed", "max"]
    for s in SETS[:5]:
        args += ["--set", s]
    result = CliRunner().invoke(run_main, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["requests", "prompt", "hit", "by"]
    assert "{" not in result.stdout and lines[-1].startswith("integrity       0 failures")
