"""``flexkv-run bench remote`` (``flexkv_engine.probes.remote``) on small sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_engine.cli import main

SMALL = [
    "bench", "remote", "--tokens-per-block", "1", "--blocks", "4", "--batch", "2",
    "--repeat", "2", "--latency-ops", "3", "--exists-batch", "6",
]  # fmt: skip
LATENCIES = ("get_one", "put_one", "exists_one", "exists_batch")


def check_backend(figures: dict[str, object]) -> None:
    assert figures["put_gbps"] > 0 and figures["get_gbps"] > 0  # type: ignore[operator]
    assert len(figures["rounds"]) == 2  # type: ignore[arg-type]
    for name in LATENCIES:
        lat = figures["latency_s"][name]  # type: ignore[index]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"], name


def test_fs_figures_and_the_json_file(tmp_path: Path) -> None:
    out = tmp_path / "remote.json"
    args = [*SMALL, "--backend", "fs", "--dir", str(tmp_path), "--json", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    assert report["layout"]["block_bytes"] == 128 * 1024  # Llama-3-8B, one token
    assert report["object_bytes"] == 128 * 1024 + 40
    assert list(report["backends"]) == ["fs"]
    check_backend(report["backends"]["fs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote.json"]  # store removed


@pytest.mark.redis
def test_redis_on_a_server_it_starts() -> None:
    result = CliRunner().invoke(main, [*SMALL, "--backend", "redis"])
    assert result.exit_code == 0, result.output
    assert "redis: put" in result.stdout and "exists 6 keys" in result.stdout


@pytest.mark.redis
def test_redis_at_a_given_url_is_left_clean(redis_server_factory) -> None:  # type: ignore[no-untyped-def]
    import redis

    server = redis_server_factory(password="pw")
    args = [*SMALL, "--backend", "redis", "--redis-url", server.url, "--json"]
    result = CliRunner().invoke(main, [*args, "--redis-password", "pw"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["backends"]["redis"]
    check_backend(figures)
    assert figures["url"] == server.url and figures["redis_version"]
    client = redis.Redis.from_url(server.url, password="pw")
    assert client.dbsize() == 0
    client.close()


def test_redis_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from flexkv_engine.storage.remote import redis_server

    monkeypatch.setattr(redis_server, "redis_server_binary", lambda: None)
    result = CliRunner().invoke(main, [*SMALL, "--backend", "redis", "--json"])
    assert result.exit_code == 0, result.output
    skipped = json.loads(result.stdout)["backends"]["redis"]["skipped"]
    assert "redis-server is not installed" in skipped


def test_bad_options_are_usage_errors() -> None:
    result = CliRunner().invoke(main, [*SMALL, "--model", "no-such-model"])
    assert result.exit_code == 2 and "unknown model" in result.output
