"""``--hardware`` is checked in both modes of ``flexkv-sim replay`` (and ``shared``).

Hit-rate mode used to skip loading the profiles, so a typo in a name or a key went
unnoticed until a timing run. Now both modes load them; hit-rate mode then says that
the hardware does not change hit rates, and its hits are those of a run without it.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flexkv_sim.cli import main
from flexkv_sim.hardware import HITRATE_HARDWARE_NOTE
from flexkv_sim.workloads import generate, write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("hardware-check") / "chat.jsonl"
    write_trace(path, *generate("multiturn", requests=60, seed=3, rate=10.0))
    return path


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("profiles")
    (d / "bad_key.yaml").write_text(
        "schema_version: 1\npcie:\n  h2d:\n    sm:\n      bandwdth: 10GB/s\n"
    )
    (d / "bad_section.yaml").write_text("schema_version: 1\nsdd:\n  read: {bandwidth: 3GB/s}\n")
    (d / "bad_yaml.yaml").write_text("schema_version: 1\nssd: [1, 2\n")
    (d / "good.yaml").write_text(
        "schema_version: 1\nname: faster-ssd\nssd:\n  read:\n    bandwidth: 3GB/s\n"
    )
    return d


def replay(trace, *args: str):
    return CliRunner().invoke(main, ["replay", str(trace), "--json", *args])


BAD = [
    ("no-such-profile", ["no-such-profile", "choose from: ", "scenarios/hardware"]),
    ("{d}/missing.yaml", ["missing.yaml", "no such file"]),
    ("{d}/bad_key.yaml", ["bad_key.yaml", "pcie.h2d.sm.bandwdth", "unknown key"]),
    ("{d}/bad_section.yaml", ["bad_section.yaml", "sdd", "unknown section"]),
    ("{d}/bad_yaml.yaml", ["bad_yaml.yaml", "invalid YAML"]),
]


@pytest.mark.parametrize("mode", ["hitrate", "timing"])
@pytest.mark.parametrize(("name", "said"), BAD)
def test_a_bad_profile_exits_2_in_both_modes(trace, profiles, mode, name, said) -> None:
    result = replay(trace, "--mode", mode, "--hardware", name.format(d=profiles))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    for text in said:
        assert text in result.stderr
    assert result.stdout == ""


def test_a_bad_profile_after_a_good_one_is_still_an_error(trace, profiles) -> None:
    result = replay(trace, "--hardware", "ssd-gen5", "--hardware", f"{profiles}/bad_key.yaml")
    assert result.exit_code == 2
    assert "pcie.h2d.sm.bandwdth" in result.stderr


@pytest.mark.parametrize("name", ["ssd-gen5", "{d}/good.yaml"])
def test_a_good_profile_in_hitrate_mode_notes_and_changes_no_hit(trace, profiles, name) -> None:
    plain = replay(trace)
    assert plain.exit_code == 0, plain.output
    assert HITRATE_HARDWARE_NOTE not in plain.stderr
    given = replay(trace, "--hardware", name.format(d=profiles))
    assert given.exit_code == 0, given.output
    assert f"note: {HITRATE_HARDWARE_NOTE}" in given.stderr
    a, b = json.loads(plain.stdout), json.loads(given.stdout)
    for key in ("requests", "prompt_tokens", "hit_rate", "hit_rate_by_tier"):
        assert a[key] == b[key], key


def test_timing_mode_uses_the_profile_without_the_note(trace, profiles) -> None:
    result = replay(trace, "--mode", "timing", "--hardware", f"{profiles}/good.yaml")
    assert result.exit_code == 0, result.output
    assert HITRATE_HARDWARE_NOTE not in result.stderr


@pytest.mark.parametrize("mode", ["hitrate", "timing"])
def test_shared_checks_the_profile_in_both_modes(trace, profiles, mode) -> None:
    args = ["shared", str(trace), "--set", "cache_config.num_remote_blocks=500", "--json"]
    bad = CliRunner().invoke(main, [*args, "--mode", mode, "--hardware", "no-such-profile"])
    assert bad.exit_code == 2
    assert "no-such-profile" in bad.stderr
    good = CliRunner().invoke(main, [*args, "--mode", mode, "--hardware", "ssd-gen5"])
    assert good.exit_code == 0, good.output
    assert (HITRATE_HARDWARE_NOTE in good.stderr) == (mode == "hitrate")
