"""``trace generate``: a bounded request count, and a killed run leaves no file behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from flexkv_sim.cli import main as sim_main
from flexkv_sim.cli_trace import MAX_GENERATED_REQUESTS


def test_requests_above_the_bound_are_refused_with_it(tmp_path) -> None:
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(sim_main, [
        "trace", "generate", "--workload", "multiturn", "--seed", "1",
        "--requests", str(MAX_GENERATED_REQUESTS + 1), "-o", str(out),
    ])
    assert result.exit_code == 2
    assert f"{MAX_GENERATED_REQUESTS}" in result.output and not out.exists()


def test_a_killed_run_leaves_neither_the_file_nor_a_partial_one(tmp_path) -> None:
    out = tmp_path / "big.jsonl"
    code = "from flexkv_sim.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "trace", "generate", "--workload", "agent",
         "--requests", "2000000", "--seed", "1", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no partial file appeared"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == []
