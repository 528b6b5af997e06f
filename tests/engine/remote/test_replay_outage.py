"""A replay through a redis store that stops in the middle and comes back."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from flexkv_engine.hw_replay.run import RUN_COLUMNS, run_replay
from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.workloads import generate, write_trace

TINY = ["model_config.num_layers=1", "model_config.num_kv_heads=1",
        "model_config.head_size=16", "model_config.dtype=float16"]
STOP, START = 60, 120  # requests done when the server stops, and when it is back


class Outage:
    """A progress sink that stops the server after STOP requests and starts it after START."""

    def __init__(self, server) -> None:
        self.server, self.done = server, 0

    def update(self, n: int) -> None:
        self.done += n
        if self.done == STOP:
            self.server.stop()
        elif self.done == START:
            self.server.start()


@pytest.mark.redis
@pytest.mark.faults
def test_replay_serves_through_an_outage_and_uses_the_store_again(redis_server, tmp_path):
    trace = tmp_path / "chat.jsonl"
    write_trace(trace, *generate("multiturn", requests=200, seed=3, rate=4.0))
    inp = prepare_replay(trace, overrides=[
        *TINY, "cache_config.num_cpu_blocks=60", "cache_config.num_remote_blocks=5000",
        "cache_config.remote_backend=redis", f"cache_config.remote_url={redis_server.url}",
    ])
    run = run_replay(inp, progress=Outage(redis_server))
    summary = run.summary
    assert summary["integrity_failures"] == 0  # nothing wrong was ever loaded
    errors = summary["remote_errors"]
    assert errors["puts_dropped"] > 0  # writes during the outage were dropped, counted
    remote = RUN_COLUMNS.index("remote_tokens")
    cpu = RUN_COLUMNS.index("cpu_tokens")
    during = run.records[STOP + 1 : START - 1]
    after = run.records[START + 10 :]
    assert sum(r[remote] for r in during) == 0  # no remote hit while the store is away
    assert sum(r[cpu] for r in during) > 0  # the CPU tier kept serving
    assert sum(r[remote] for r in after) > 0  # the store is used again
