"""``flexkv-sim calibrate`` warns on a path fitted from few ops or with a poor R^2.

The recordings are traces of transfer records made here: ops one after the other (no
sharing to undo), timed by ``overhead + bytes / bandwidth`` with log-normal noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from flexkv_engine.trace import SCHEMA_VERSION, TraceHeader, TraceWriter, TransferRecord
from flexkv_sim.calibrate.fit import MIN_FIT_OPS, MIN_FIT_R2, PathFit, fit_warnings
from flexkv_sim.cli import main
from flexkv_sim.hardware import load_profiles

BLOCK = 1 << 20


def recording(path, ops: dict[str, tuple[int, int, float]], seed: int = 0):
    """A trace of ``count`` ops per path, of 1..``max_blocks`` blocks, with noise ``sigma``."""
    rng = np.random.default_rng(seed)
    with TraceWriter(path, TraceHeader(SCHEMA_VERSION, "test", 16)) as writer:
        t = 0.0
        for name, (count, max_blocks, sigma) in ops.items():
            for i in range(count):
                blocks = int(rng.integers(1, max_blocks + 1))
                took = (2e-4 + blocks * BLOCK / 2e9) * float(rng.lognormal(0.0, sigma))
                writer.write(TransferRecord(f"r{i}", i, name, blocks * BLOCK, blocks, t, 0.0, took))
                t += 1.0  # one op at a time
    return path


def calibrate(tmp_path, ops: dict[str, tuple[int, int, float]]):
    trace = recording(tmp_path / "run.jsonl", ops)
    profile = tmp_path / "fitted.yaml"
    result = CliRunner().invoke(main, ["calibrate", str(trace), "-o", str(profile)])
    assert result.exit_code == 0, result.output
    return result, profile


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_a_good_fit_warns_of_nothing(tmp_path) -> None:
    result, profile = calibrate(tmp_path, {"h2d": (200, 64, 0.05), "d2h": (200, 64, 0.05)})
    assert warnings_of(result) == []
    assert "warning" not in profile.read_text()
    assert load_profiles([str(profile)]).h2d.sm.bandwidth == pytest.approx(2e9, rel=0.05)


def test_few_ops_are_warned_about_naming_the_path_and_count(tmp_path) -> None:
    few = MIN_FIT_OPS - 8
    result, profile = calibrate(tmp_path, {"h2d": (200, 64, 0.05), "d2h": (few, 64, 0.05)})
    (line,) = warnings_of(result)
    assert line.startswith("warning: d2h: ") and f"fitted from {few} ops" in line
    assert f"fewer than {MIN_FIT_OPS}" in line
    text = profile.read_text()
    assert text.startswith(f"# warning: d2h: fitted from {few} ops")
    loaded = load_profiles([str(profile)])  # the profile still loads, its note kept
    assert "warning: fitted from" in loaded.sources["pcie.d2h.sm"]
    assert "warning" not in loaded.sources["pcie.h2d.sm"]


def test_a_poor_r2_is_warned_about_with_the_figure(tmp_path) -> None:
    # Sizes of one or two blocks under heavy noise: the line explains little.
    result, profile = calibrate(tmp_path, {"h2d": (300, 2, 0.6), "d2h": (200, 64, 0.05)})
    (line,) = warnings_of(result)
    assert line.startswith("warning: h2d: R^2 ")
    r2 = float(line.split("R^2 ")[1].split()[0])
    assert r2 < MIN_FIT_R2 and f"below {MIN_FIT_R2}" in line
    table = next(row for row in result.stdout.splitlines() if row.startswith("h2d"))
    assert f"{r2:.3f}" in table  # the same figure as the table's R^2 column
    assert "# warning: h2d: R^2" in profile.read_text()


def test_fit_warnings_thresholds() -> None:
    def fit(ops: int, r2: float) -> PathFit:
        return PathFit("ssd_read", ops, ops, 1e-4, 1e9, r2, 0.1, 0.2)

    assert fit_warnings(fit(MIN_FIT_OPS, MIN_FIT_R2)) == []
    assert len(fit_warnings(fit(MIN_FIT_OPS - 1, MIN_FIT_R2))) == 1
    assert len(fit_warnings(fit(MIN_FIT_OPS, MIN_FIT_R2 - 0.01))) == 1
    assert len(fit_warnings(fit(3, -0.5))) == 2


def test_help_states_the_thresholds() -> None:
    result = CliRunner().invoke(main, ["calibrate", "--help"])
    text = " ".join(result.output.split())
    assert f"fewer than {MIN_FIT_OPS} ops" in text and f"R^2 below {MIN_FIT_R2}" in text
