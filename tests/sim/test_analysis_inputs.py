"""``flexkv-sim doctor`` and ``sweep`` take a scenario file or ``TRACE --config CFG``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flexkv_engine.config import ConfigError, load_config
from flexkv_engine.config.loader import CONFIG_PATH_VAR
from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.cli import main
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.sweep import load_scenario, load_scenario_or_trace, scenario_from_trace
from flexkv_sim.sweep.scenario import point_config
from flexkv_sim.workloads import generate, write_trace

SET = "cache_config.tokens_per_block=32"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A generated trace, a config file and the scenario of the two."""
    root = tmp_path_factory.mktemp("inputs")
    trace = root / "chat.jsonl"
    header, records = generate("multiturn", requests=300, seed=3, rate=20.0)
    write_trace(trace, header, records)
    config = root / "base.json"
    config.write_text(
        '{"cache_config": {"num_cpu_blocks": 300}, // a comment\n'
        ' "serving_config": {"num_gpu_blocks": 16}}\n'
    )
    scenario = root / "chat-scenario.yaml"
    scenario.write_text(
        "schema_version: 1\ntrace: chat.jsonl\nconfig: base.json\nhardware: [ci-cpu]\n"
    )
    return {"trace": trace, "config": config, "scenario": scenario, "root": root}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def json_of(run):
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


def same_report(a, b):
    for key in ("scenario", "name", "wall_s"):
        a.pop(key), b.pop(key)
    assert a == b


def test_doctor_on_a_trace_equals_doctor_on_its_scenario(files):
    by_trace = json_of(
        invoke(
            "doctor", files["trace"], "--config", files["config"], "--hardware", "ci-cpu", "--json"
        )
    )
    by_scenario = json_of(invoke("doctor", files["scenario"], "--json"))
    assert by_trace["name"] == "chat" and by_scenario["name"] == "chat-scenario"
    assert "transfers" in by_trace and by_trace["findings"]
    same_report(by_trace, by_scenario)


def test_doctor_set_on_a_trace_equals_an_inline_config(files, tmp_path):
    scenario = tmp_path / "inline.yaml"
    scenario.write_text(
        f"schema_version: 1\ntrace: {files['trace']}\n"
        "config: {cache_config: {num_cpu_blocks: 300, tokens_per_block: 32},"
        " serving_config: {num_gpu_blocks: 16}}\n"
    )
    by_trace = json_of(
        invoke(
            "doctor",
            files["trace"],
            "--config",
            files["config"],
            "--set",
            SET,
            "--no-timing",
            "--json",
        )
    )
    by_scenario = json_of(invoke("doctor", scenario, "--no-timing", "--json"))
    assert by_trace["memory"]["tokens_per_block"] == 32
    assert by_trace["hit_rate"] == by_scenario["hit_rate"]
    assert by_trace["findings"] == by_scenario["findings"]
    assert by_trace["suggestions"] == by_scenario["suggestions"]


def test_sweep_on_a_trace_equals_the_scenario_and_the_replay(files, tmp_path, monkeypatch):
    grid = ("--grid", "cache_config.num_cpu_blocks=100,400")
    monkeypatch.chdir(tmp_path)
    rows = json_of(invoke("sweep", files["trace"], "--config", files["config"], *grid, "--json"))
    assert (tmp_path / "runs" / "chat-sweep" / "results.csv").is_file()  # named after the trace
    other = json_of(
        invoke("sweep", files["scenario"], *grid, "--out", tmp_path / "scenario", "--json")
    )
    assert [r["hit_rate"] for r in rows] == [r["hit_rate"] for r in other]
    assert rows[0]["hit_rate"] < rows[1]["hit_rate"]
    for row in rows:
        inp = prepare_replay(
            files["trace"],
            config_path=files["config"],
            overrides=[f"cache_config.num_cpu_blocks={row['cache_config.num_cpu_blocks']}"],
        )
        assert row["hit_rate"] == replay_hitrate(inp, progress=False).planner.stats.hit_rate
    # --set applies over --config and under the grid, as for replay.
    coarse = json_of(
        invoke(
            "sweep",
            files["trace"],
            "--config",
            files["config"],
            "--set",
            SET,
            "--format",
            "flexkv",
            *grid,
            "--out",
            tmp_path / "coarse",
            "--json",
        )
    )
    for row in coarse:
        assert row["block_tokens"] == 32
        inp = prepare_replay(
            files["trace"],
            config_path=files["config"],
            overrides=[SET, f"cache_config.num_cpu_blocks={row['cache_config.num_cpu_blocks']}"],
        )
        assert row["hit_rate"] == replay_hitrate(inp, progress=False).planner.stats.hit_rate
    meta = json.loads((tmp_path / "coarse" / "results.json").read_text())
    assert meta["scenario"]["config"] == str(files["config"].resolve())
    assert meta["scenario"]["config_overrides"] == {"cache_config": {"tokens_per_block": 32}}


def test_timing_sweep_on_a_trace_uses_its_hardware(files, tmp_path):
    rows = json_of(
        invoke(
            "sweep",
            files["trace"],
            "--config",
            files["config"],
            "--mode",
            "timing",
            "--hardware",
            "ci-cpu",
            "--out",
            tmp_path / "out",
            "--json",
        )
    )
    assert len(rows) == 1 and rows[0]["profiles"] == "ci-cpu" and rows[0]["ttft_p50_s"] > 0


def test_scenario_from_trace(files, tmp_path, monkeypatch):
    gz = tmp_path / "day1.jsonl.gz"
    gz.write_bytes(b"")
    spec = scenario_from_trace(gz, hardware=["ci-cpu"], mode="timing")
    assert spec.name == "day1" and spec.trace == str(gz.resolve())
    assert spec.hardware == ("ci-cpu",) and spec.mode == "timing"
    assert spec.config_path is None and dict(spec.config) == {}
    # Without --config, FLEXKV_CONFIG_PATH names the file, as for replay.
    monkeypatch.setenv(CONFIG_PATH_VAR, str(files["config"]))
    spec = scenario_from_trace(files["trace"], overrides=[SET])
    assert spec.config_path == str(files["config"].resolve())
    assert point_config(spec, {}) == load_config(files["config"], overrides=[SET])
    with pytest.raises(ConfigError, match="mode"):
        scenario_from_trace(files["trace"], mode="fast")


def test_hardware_replaces_a_scenarios_profiles(files):
    assert load_scenario(files["scenario"]).hardware == ("ci-cpu",)
    spec = load_scenario_or_trace(files["scenario"], hardware=["h100-sxm-pcie5", "ssd-gen4"])
    assert spec.hardware == ("h100-sxm-pcie5", "ssd-gen4")
    assert spec.config_path == str(files["config"].resolve())


@pytest.mark.parametrize("command", ["doctor", "sweep"])
def test_a_config_file_says_what_is_expected(files, command):
    run = invoke(command, files["config"])
    assert run.exit_code == 2
    assert f"{files['config']} is a config file" in run.output
    assert f"give a scenario YAML, or a TRACE with --config {files['config']}" in run.output


@pytest.mark.parametrize("command", ["doctor", "sweep"])
@pytest.mark.parametrize(
    ("option", "key"),
    [
        (["--config", "base.json"], "config"),
        (["--set", SET], "config"),
        (["--format", "flexkv"], "trace_format"),
        (["--block-size", "16"], "block_size"),
    ],
)
def test_trace_options_on_a_scenario_are_refused(files, command, option, key):
    option = [str(files["config"]) if o == "base.json" else o for o in option]
    run = invoke(command, files["scenario"], *option)
    assert run.exit_code == 2
    assert f"{option[0]} applies to a TRACE; the scenario names its" in run.output
    assert f"(key `{key}`)" in run.output


@pytest.mark.parametrize("command", ["doctor", "sweep"])
@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("notes.txt", "hello\n", "not a mapping at the top"),
        ("other.yaml", "foo: 1\n", "no `schema_version`"),
        ("broken.yaml", "a: [1,\n", "invalid YAML"),
        ("empty.yaml", "\n", "the file is empty"),
    ],
)
def test_neither_a_scenario_nor_a_trace_names_both_forms(tmp_path, command, name, text, why):
    path = tmp_path / name
    path.write_text(text)
    run = invoke(command, path)
    assert run.exit_code == 2
    assert "neither a scenario" in run.output and why in run.output
    assert "give a scenario (YAML or JSON with `schema_version: 1`), or a TRACE" in run.output
    assert "mooncake" in run.output  # the trace formats the loader knows


def test_a_scenario_without_schema_version_is_read_as_one(files, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"trace: {files['trace']}\n")
    run = invoke("doctor", path, "--no-timing")
    assert run.exit_code == 2 and "schema_version: must be 1, got None" in run.output


def test_a_bad_config_or_set_on_a_trace_names_the_file_or_key(files, tmp_path):
    run = invoke("doctor", files["trace"], "--config", tmp_path / "missing.json", "--no-timing")
    assert run.exit_code == 2 and "missing.json: cannot read config file" in run.output
    run = invoke("sweep", files["trace"], "--set", "cache_config.bogus=1")
    assert run.exit_code == 2 and "cache_config.bogus: unknown key" in run.output
