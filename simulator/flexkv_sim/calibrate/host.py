"""The ``interpreter`` section of a fitted profile: the engine's host CPU work.

A loaded engine waits for its CPUs as well as for its devices: every request thread,
transfer worker and completion handler needs a CPU (and Python's interpreter) for its
bookkeeping, and on a machine of few cores they queue for them. The twin models this
as processor sharing over ``interpreter.cpus`` CPUs (:class:`~flexkv_sim.devices.HostCpu`)
carrying three kinds of job: the profile's ``match`` and ``complete`` times of each GET
and PUT, ``prefill_per_block`` seconds per prompt block in the prefill window, and
``put_per_block`` beside the PUT.

Fitted from ``flexkv-run replay`` runs whose ``summary.json`` has ``cpu`` (the process's
CPU seconds during the replay, and those of the requests' prefill windows):

- ``prefill_per_block``: the prefill windows' CPU over the prompt blocks;
- ``put_per_block``: the rest of the process's CPU over the prompt blocks, less what the
  twin already counts elsewhere (the ``match``/``complete`` jobs, and on ``--device
  cpu`` the PCIe paths' copies, which are memory copies timed on their own links);
- ``cpus``: the candidate of :data:`CPU_CANDIDATES` whose twin replays of the paced runs
  come closest to their measured GET p50 and p90 (sum of absolute log ratios). Runs
  of one request at a time never share the CPUs, so without a paced run ``cpus`` stays
  1 and the source says that it was not identified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from flexkv_engine.core.paths import D2H, H2D
from flexkv_engine.replay_input import ReplayInput, prepare_replay
from flexkv_engine.summary import percentiles

CPU_CANDIDATES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)


def fit_interpreter(runs: Sequence[Any], doc: dict[str, Any]) -> None:
    """Add the ``interpreter`` section to the profile document ``doc`` (and its source),
    from the runs (:class:`~.fit.RunData`) that recorded their CPU time."""
    used = [r for r in runs if r.summary and "cpu" in r.summary and r.config is not None]
    if not used:
        return
    inputs = [prepare_replay(r.trace_path, config=r.config) for r in used]
    blocks = sum(len(q.keys) for inp in inputs for q in inp.requests)
    if not blocks:
        return
    prefill = sum(float(r.summary["cpu"]["prefill_s"]) for r in used)
    process = sum(float(r.summary["cpu"]["process_s"]) for r in used)
    counted = 0.0
    for run, inp in zip(used, inputs, strict=True):
        gets = sum(1 for q in inp.requests if q.op == "get")
        counted += (doc.get("match", 0.0) + doc.get("complete", 0.0)) * gets
        counted += doc.get("complete", 0.0) * len(inp.requests)
        if run.summary.get("device") == "cpu":
            counted += sum(t.transfer_s for t in run.transfers if t.path in (H2D, D2H))
    section = {
        "prefill_per_block": prefill / blocks,
        "put_per_block": max(process - prefill - counted, 0.0) / blocks,
        "cpus": 1.0,
    }
    doc["interpreter"] = section
    paced = [
        (r, inp)
        for r, inp in zip(used, inputs, strict=True)
        if isinstance(r.summary.get("pacing", {}).get("speed"), (int, float))
    ]
    how = (
        f"CPU seconds per prompt block over {len(used)} run(s) ({blocks} blocks): "
        f"{prefill:.3f} s in the prefill windows, {process:.3f} s in the process"
    )
    if paced:
        section["cpus"], err = _best_cpus(doc, paced)
        how += (
            f"; cpus: of {', '.join(f'{c:g}' for c in CPU_CANDIDATES)}, the closest "
            f"GET p50/p90 over {len(paced)} paced run(s) (sum |log ratio| {err:.3f})"
        )
    else:
        how += "; cpus not identified (no paced run): 1"
    doc.setdefault("sources", {})["interpreter"] = how


def _best_cpus(doc: dict[str, Any], paced: list[tuple[Any, ReplayInput]]) -> tuple[float, float]:
    from ..hardware import HardwareProfile, merge_profile
    from ..replay.timing import TIMING_COLUMNS, replay_timing

    column = TIMING_COLUMNS.index("get_s")
    best: tuple[float, float] = (1.0, math.inf)
    for cpus in CPU_CANDIDATES:
        candidate = {**doc, "interpreter": {**doc["interpreter"], "cpus": cpus}}
        profile = merge_profile(HardwareProfile(), candidate, "calibrate")
        err = 0.0
        for run, inp in paced:
            speed = run.summary["pacing"]["speed"]
            result = replay_timing(inp, profile, speed=speed, progress=False)
            predicted = percentiles([r[column] for r in result.records if r[2] == "get"])
            measured = run.summary["latency"]["get_s"]
            for q in ("p50", "p90"):
                if predicted[q] and measured[q]:
                    err += abs(math.log(predicted[q] / measured[q]))
        if err < best[1] - 1e-9:
            best = (cpus, err)
    return best
