"""Every file of the bad-input corpus, through the command lines as a user runs them.

``corpus/expectations.yaml`` maps each malformed config, trace and hardware profile (and
each bad ``--set`` item) to the substring its error must contain: the key path for
configs and profiles, ``file:line`` for traces. Each must end with exit status 2, that
message on stderr, and no traceback anywhere. Most cases run in-process through click's
CliRunner; a few run the installed console scripts to prove the real exit status and
stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from flexkv_engine.cli import main as run_main
from flexkv_sim.cli import main as sim_main

CORPUS = Path(__file__).parent / "corpus"
EXPECT = yaml.safe_load((CORPUS / "expectations.yaml").read_text())
GOOD_TRACE = "good/tiny.jsonl"
GOOD_CONFIG = "good/ok.json"
BIN = Path(sys.executable).parent


def _cases() -> list[pytest.param]:
    cases = []
    for name, expected in EXPECT["config"].items():
        path = f"config/{name}"
        cases.append(pytest.param(run_main, ["config", path], expected, id=f"run-config:{name}"))
        cases.append(
            pytest.param(
                sim_main,
                ["replay", GOOD_TRACE, "--config", path, "--json"],
                expected,
                id=f"sim-replay-config:{name}",
            )
        )
    for item, expected in EXPECT["set"].items():
        args = ["config", GOOD_CONFIG, "--set", item]
        cases.append(pytest.param(run_main, args, expected, id=f"run-set:{item}"))
    for name, expected in EXPECT["trace"].items():
        path = f"trace/{name}"
        cases.append(
            pytest.param(sim_main, ["trace", "stats", path], expected, id=f"sim-stats:{name}")
        )
        cases.append(
            pytest.param(sim_main, ["replay", path, "--json"], expected, id=f"sim-replay:{name}")
        )
    for name, expected in EXPECT["hardware"].items():
        args = ["replay", GOOD_TRACE, "--mode", "timing", "--hardware", f"hardware/{name}"]
        cases.append(pytest.param(sim_main, [*args, "--json"], expected, id=f"sim-hw:{name}"))
    return cases


@pytest.fixture(autouse=True)
def _in_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the corpus with paths as a user types them; no FLEXKV_* from the shell."""
    monkeypatch.chdir(CORPUS)
    for var in list(os.environ):
        if var.startswith("FLEXKV_"):
            monkeypatch.delenv(var)


def _assert_bad_input(code: int, stdout: str, stderr: str, expected: str) -> None:
    assert "Traceback" not in stdout + stderr, stdout + stderr
    assert code == 2, f"exit status {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert expected in stderr, f"{expected!r} not in stderr: {stderr!r}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], stderr
    assert stdout == "", stdout


@pytest.mark.parametrize(("cli", "args", "expected"), _cases())
def test_bad_input_is_one_line_and_status_2(cli, args: list[str], expected: str) -> None:
    result: Result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    _assert_bad_input(result.exit_code, result.stdout, result.stderr, expected)


def test_every_corpus_file_has_an_expectation() -> None:
    listed = {f"{kind}/{name}" for kind in ("config", "trace", "hardware") for name in EXPECT[kind]}
    on_disk = {
        p.relative_to(CORPUS).as_posix()
        for kind in ("config", "trace", "hardware")
        for p in (CORPUS / kind).iterdir()
    }
    assert listed == on_disk


def test_good_inputs_pass() -> None:
    """The baseline the bad cases differ from is itself accepted."""
    runner = CliRunner()
    for cli, args in (
        (run_main, ["config", GOOD_CONFIG]),
        (sim_main, ["trace", "stats", GOOD_TRACE]),
        (sim_main, ["replay", GOOD_TRACE, "--config", GOOD_CONFIG, "--json"]),
        (sim_main, ["replay", GOOD_TRACE, "--mode", "timing", "--hardware", "ci-cpu", "--json"]),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)


# A few through the installed scripts: the real process exit status and stderr.
SUBPROCESS_CASES = [
    ("flexkv-run", ["config", "config/absurd_cpu_blocks.json"], "config", "absurd_cpu_blocks.json"),
    ("flexkv-run", ["config", GOOD_CONFIG, "--set", "cache_config.evict_ratio=2"], "set",
     "cache_config.evict_ratio=2"),
    ("flexkv-sim", ["trace", "stats", "trace/truncated.jsonl.gz"], "trace", "truncated.jsonl.gz"),
    ("flexkv-sim", ["replay", "trace/mooncake_bad_hash_ids.jsonl"], "trace",
     "mooncake_bad_hash_ids.jsonl"),
    ("flexkv-sim", ["replay", "trace/azure_bad_timestamp.csv"], "trace", "azure_bad_timestamp.csv"),
    ("flexkv-sim", ["replay", GOOD_TRACE, "--mode", "timing", "--hardware",
                    "hardware/bad_unit.yaml"], "hardware", "bad_unit.yaml"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("script", "args", "kind", "name"), SUBPROCESS_CASES, ids=[c[3] for c in SUBPROCESS_CASES]
)
def test_real_scripts_exit_2(script: str, args: list[str], kind: str, name: str) -> None:
    exe = BIN / script
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXKV_")}
    proc = subprocess.run(
        [str(exe), *args],
        check=False,
        cwd=CORPUS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _assert_bad_input(proc.returncode, proc.stdout, proc.stderr, EXPECT[kind][name])
    assert proc.stderr.startswith(f"{script}: error: "), proc.stderr
