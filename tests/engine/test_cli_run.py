"""``flexkv-run config`` and ``flexkv-run info``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from flexkv_engine.cli import main


def test_config_resolves_operator_snippet(tmp_path) -> None:
    cfg = tmp_path / "flexkv.json"
    cfg.write_text('{"cache_config": {"num_cpu_blocks": 100000, // more CPU cache\n'
                   '"num_ssd_blocks": 1000000}}')
    result = CliRunner().invoke(main, ["config", str(cfg), "--block-size", "32"])
    assert result.exit_code == 0, result.output
    cache = json.loads(result.stdout)["cache_config"]
    assert cache["num_cpu_blocks"] == 100000
    assert cache["num_ssd_blocks"] == 1000000 and cache["enable_ssd"] is True
    assert cache["tokens_per_block"] == 32


def test_bad_key_exits_2_naming_it(tmp_path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"cache_config": {"num_cpu_blokcs": 10}}')
    result = CliRunner().invoke(main, ["config", str(cfg)])
    assert result.exit_code == 2
    assert "cache_config.num_cpu_blokcs" in result.stderr
    assert "num_cpu_blocks" in result.stderr  # the suggestion
    assert "Traceback" not in result.stderr


def test_info_reports_the_native_build() -> None:
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["version"]
    assert "native" in report
