"""The engine's host CPUs in the twin: processor sharing, the profile section, its fit."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import simpy

from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.trace import RequestRecord, TraceHeader, TraceWriter
from flexkv_sim.calibrate.host import fit_interpreter
from flexkv_sim.devices import HostCpu
from flexkv_sim.hardware import HardwareProfile, ProfileError, load_profiles, merge_profile
from flexkv_sim.replay.timing import TIMING_COLUMNS, replay_timing

COL = {name: i for i, name in enumerate(TIMING_COLUMNS)}


def approx(value):  # the host CPU's work is counted in whole picoseconds
    return pytest.approx(value, rel=1e-6, abs=1e-10)


BASE = """\
schema_version: 1
name: host
compute: {prefill_fixed: 1ms, prefill_per_token: 0, prefill_quadratic: 0, decode_step: 0}
match: 100us
"""


def finish_times(cpus: float, jobs: list[tuple[float, float]]) -> list[float]:
    """When each job (start, CPU seconds) ends on ``cpus`` host CPUs."""
    env = simpy.Environment()
    host = HostCpu(env, cpus)
    ends: list[float] = [0.0] * len(jobs)
    for i, (start, seconds) in enumerate(jobs):

        def begin(_ev, i=i, seconds=seconds) -> None:
            host.run(seconds, lambda: ends.__setitem__(i, env.now))

        env.timeout(start).callbacks.append(begin)
    env.run()
    return ends


def test_a_job_alone_takes_its_cpu_time_even_with_spare_cpus() -> None:
    assert finish_times(1, [(0, 0.004)]) == approx([0.004])
    assert finish_times(4, [(0, 0.004)]) == approx([0.004])


def test_jobs_share_the_cpus_equally() -> None:
    # Two at once on one CPU: each at half speed; on two CPUs: each at full speed.
    assert finish_times(1, [(0, 0.002), (0, 0.002)]) == approx([0.004, 0.004])
    assert finish_times(2, [(0, 0.002), (0, 0.002)]) == approx([0.002, 0.002])
    # Three on two CPUs: 2/3 of a CPU each until the short one ends at 1.5 ms; the
    # others have 2 ms left of 3 and then run at full speed.
    ends = finish_times(2, [(0, 0.001), (0, 0.003), (0, 0.003)])
    assert ends == approx([0.0015, 0.0035, 0.0035])
    # A late job slows the one already running only while both run.
    assert finish_times(1, [(0, 0.002), (0.001, 0.002)]) == approx([0.003, 0.004])


def test_the_interpreter_section_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "interpreter: {prefill_per_block: 20us, put_per_block: 10us, cpus: 2}\n")
    profile = load_profiles([str(path)])
    assert profile.prefill_cpu_per_block_s == approx(20e-6)
    assert profile.put_cpu_per_block_s == approx(10e-6)
    assert profile.host_cpus == 2.0
    for bad, key in (
        ("{cpus: 0.5}", "interpreter.cpus"),
        ("{cores: 2}", "interpreter.cores"),
        ("{put_per_block: -1us}", "interpreter.put_per_block"),
    ):
        with pytest.raises(ProfileError, match=key.replace(".", r"\.")):
            merge_profile(
                HardwareProfile(), {"schema_version": 1, "interpreter": eval_yaml(bad)}, "p.yaml"
            )


def eval_yaml(text: str):
    import yaml

    return yaml.safe_load(text)


def trace_of(tmp_path: Path, starts: list[float], blocks: int = 10) -> Path:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, TraceHeader(1, "test", 16)) as writer:
        for i, t in enumerate(starts):
            keys = [1000 * i + k for k in range(blocks)]  # no sharing: every GET misses
            writer.write(RequestRecord(t, "get", f"r{i}", 16 * blocks, keys))
    return path


def profile_with(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + text)
    return load_profiles([str(path)])


def test_host_work_holds_the_prefill_window_and_queues_a_loaded_engine(tmp_path: Path) -> None:
    inp = prepare_replay(trace_of(tmp_path, [0.0, 10.0]))
    free = replay_timing(inp, profile_with(tmp_path, ""), progress=False).records
    # 10 blocks x 300 us = 3 ms of prefill-window work, longer than the 1 ms prefill.
    slow = profile_with(tmp_path, "interpreter: {prefill_per_block: 300us, cpus: 1}\n")
    alone = replay_timing(inp, slow, progress=False).records
    for row in free:
        assert row[COL["prefill_s"]] == approx(1e-3)
        assert row[COL["get_s"]] == approx(100e-6)
    for row in alone:  # requests 10 s apart never share the CPU
        assert row[COL["prefill_s"]] == approx(3e-3)
        assert row[COL["get_s"]] == approx(100e-6)
    # Two requests at once: both prefill windows share one CPU (6 ms for both), and the
    # second's match waits behind nothing but shares the CPU with the first's match.
    both = replay_timing(
        prepare_replay(trace_of(tmp_path, [0.0, 0.0])), slow, progress=False
    ).records
    assert [r[COL["get_s"]] for r in both] == approx([200e-6, 200e-6])
    assert [r[COL["prefill_s"]] for r in both] == approx([6e-3, 6e-3])
    two_cpus = profile_with(tmp_path, "interpreter: {prefill_per_block: 300us, cpus: 2}\n")
    both = replay_timing(
        prepare_replay(trace_of(tmp_path, [0.0, 0.0])), two_cpus, progress=False
    ).records
    assert [r[COL["prefill_s"]] for r in both] == approx([3e-3, 3e-3])


def test_put_work_keeps_the_request_until_it_is_done(tmp_path: Path) -> None:
    inp = prepare_replay(trace_of(tmp_path, [0.0]))
    rows = replay_timing(
        inp, profile_with(tmp_path, "interpreter: {put_per_block: 500us}\n"), progress=False
    ).records
    first_token = rows[0][COL["t"]] + rows[0][COL["ttft_s"]]
    assert rows[0][COL["end_t"]] - first_token == approx(5e-3)


def run_data(
    trace: Path, *, process_s: float, prefill_s: float, speed, p50=None, p90=None, device="cpu"
):
    from flexkv_engine.config import load_config

    summary = {
        "cpu": {"process_s": process_s, "prefill_s": prefill_s},
        "pacing": {"speed": speed},
        "device": device,
        "latency": {"get_s": {"p50": p50, "p90": p90}},
    }
    return SimpleNamespace(
        trace_path=trace, config=load_config(None, env={}), summary=summary, transfers=[]
    )


def test_the_fit_divides_cpu_time_over_prompt_blocks(tmp_path: Path) -> None:
    trace = trace_of(tmp_path, [float(i) for i in range(20)])  # 20 GETs of 10 blocks
    doc = {"schema_version": 1, "match": 1e-4, "complete": 2e-4}
    fit_interpreter([run_data(trace, process_s=0.1, prefill_s=0.02, speed="max")], doc)
    host = doc["interpreter"]
    assert host["prefill_per_block"] == approx(0.02 / 200)
    # what match and complete already count: 20 x (100 + 200) us for the GETs, 20 x 200
    # us for the PUTs
    assert host["put_per_block"] == approx((0.1 - 0.02 - 20 * 3e-4 - 20 * 2e-4) / 200)
    assert host["cpus"] == 1.0 and "not identified" in doc["sources"]["interpreter"]
    runs_without = [SimpleNamespace(summary={}, config=None, trace_path=trace, transfers=[])]
    untouched: dict = {"schema_version": 1}
    fit_interpreter(runs_without, untouched)
    assert "interpreter" not in untouched


def test_the_cpus_are_those_whose_replay_matches_the_paced_run(tmp_path: Path) -> None:
    # Ten requests at once, 10 blocks each; made-up measurements that one and only one
    # CPU count reproduces: the twin's own prediction with 3 CPUs.
    trace = trace_of(tmp_path, [0.0] * 10)
    inp = prepare_replay(trace)
    section = "interpreter: {prefill_per_block: 50us, put_per_block: 0, cpus: 3}\n"
    target = replay_timing(inp, profile_with(tmp_path, section), speed=1.0, progress=False)
    gets = sorted(r[COL["get_s"]] for r in target.records)
    from flexkv_engine.summary import percentiles

    measured = percentiles(gets)
    doc = {
        "schema_version": 1,
        "match": 1e-4,
        "complete": 0.0,
        "compute": {
            "prefill_fixed": 1e-3,
            "prefill_per_token": 0.0,
            "prefill_quadratic": 0.0,
            "decode_step": 0.0,
        },
    }
    fit_interpreter(
        [
            run_data(
                trace,
                process_s=10 * 10 * 50e-6 + 10 * 1e-4,
                prefill_s=5e-3,
                speed=1.0,
                p50=measured["p50"],
                p90=measured["p90"],
            )
        ],
        doc,
    )
    assert doc["interpreter"]["prefill_per_block"] == approx(50e-6)
    assert abs(doc["interpreter"]["put_per_block"]) < 1e-12
    assert doc["interpreter"]["cpus"] == 3.0
    assert math.isclose(
        float(doc["sources"]["interpreter"].rsplit(" ", 1)[-1][:-1]), 0.0, abs_tol=1e-6
    )
