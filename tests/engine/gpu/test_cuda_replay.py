"""``flexkv-run replay --device cuda``: every block checked, and its trace replays in the twin
with the same hits, request by request."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from flexkv_engine.cli import main as run_main  # noqa: E402
from flexkv_engine.hw_replay.run import RUN_COLUMNS  # noqa: E402
from flexkv_engine.replay_input import prepare_replay  # noqa: E402
from flexkv_engine.transfer.cuda_copy import cuda_mover_unavailable  # noqa: E402
from flexkv_sim.cli import main as sim_main  # noqa: E402
from flexkv_sim.replay import replay_hitrate  # noqa: E402
from flexkv_sim.workloads import generate, write_trace  # noqa: E402

LAYOUT = ["model_config.num_layers=4", "model_config.num_kv_heads=8",
          "model_config.head_size=128", "model_config.dtype=bfloat16"]


@pytest.mark.parametrize("copy_engine", [False, True], ids=["sm", "ce"])
def test_cuda_replay_checks_every_block_and_its_trace_replays(tmp_path, copy_engine) -> None:
    why = cuda_mover_unavailable("cuda")
    if why is not None:
        pytest.skip(f"gpu: {why}")
    trace = tmp_path / "chat.jsonl"
    write_trace(trace, *generate("multiturn", requests=150, seed=21, rate=6.0))
    sets = [*LAYOUT, "cache_config.num_cpu_blocks=200", "cache_config.num_ssd_blocks=2000",
            f"cache_config.ssd_cache_dir={tmp_path / 'ssd'}",
            f"cache_config.use_ce_transfer_h2d={str(copy_engine).lower()}",
            f"cache_config.use_ce_transfer_d2h={str(copy_engine).lower()}"]
    args = [a for s in sets for a in ("--set", s)]
    out = tmp_path / "run"
    result = CliRunner().invoke(run_main, ["replay", str(trace), "--device", "cuda",
                                           "--speed", "max", "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["integrity_failures"] == 0 and summary["failed_ops"] == 0
    assert summary["hit_rate_by_tier"]["cpu"] > 0 and summary["hit_rate_by_tier"]["ssd"] > 0
    # The twin, on the same input: the same hits, request by request.
    twin = replay_hitrate(prepare_replay(trace, overrides=sets), progress=False)
    rows = [line.split(",") for line in (out / "requests.csv").read_text().splitlines()[1:]]
    hits = slice(RUN_COLUMNS.index("gpu_tokens"), RUN_COLUMNS.index("remote_tokens") + 1)
    assert [tuple(map(int, r[hits])) for r in rows] == [r[5:9] for r in twin.records]
    # The trace the engine wrote replays in the twin with the same hit rates.
    again = CliRunner().invoke(sim_main, ["replay", str(out / "trace.jsonl"), "--json", *args])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["hit_rate_by_tier"] == summary["hit_rate_by_tier"]
