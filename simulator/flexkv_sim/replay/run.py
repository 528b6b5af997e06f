"""One replay in the twin, in either mode: options in, a ``ReplayResult`` out.

``flexkv-sim replay`` runs :func:`run_replay`; sweeps and the doctor run the replay
functions themselves and wrap what they return with :func:`hitrate_result` or
:func:`timing_result`. Every one of them, as ``flexkv-run replay``, reads its summary
from :meth:`flexkv_engine.results.ReplayResult.summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING

from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.results import LinkTiming, ReplayResult

from .hitrate import RECORD_COLUMNS, HitRateResult, replay_hitrate

if TYPE_CHECKING:
    from ..hardware import HardwareProfile
    from .timing import TimingResult

TOOL = "flexkv-sim"
MODES = ("hitrate", "timing")


def hitrate_result(inp: ReplayInput, result: HitRateResult) -> ReplayResult:
    """The result of a hit-rate replay of ``inp``."""
    return ReplayResult(
        inp,
        result.planner,
        tool=TOOL,
        mode="hitrate",
        wall_s=result.wall_s,
        records=result.records,
        columns=RECORD_COLUMNS,
    )


def timing_result(inp: ReplayInput, timed: TimingResult, hardware: Sequence[str]) -> ReplayResult:
    """The result of a timing replay of ``inp`` on the profiles named ``hardware``."""
    from .timing import TIMING_COLUMNS

    return ReplayResult(
        inp,
        timed.planner,
        tool=TOOL,
        mode="timing",
        wall_s=timed.wall_s,
        records=timed.records,
        columns=TIMING_COLUMNS,
        timing=LinkTiming(timed.links, timed.span_s, tuple(hardware)),
    )


def run_replay(
    inp: ReplayInput,
    *,
    mode: str = "hitrate",
    profile: HardwareProfile | None = None,
    progress: bool | None = None,
    timeline: str | PathLike[str] | None = None,
) -> ReplayResult:
    """Replay ``inp`` in ``mode``; timing mode runs on ``profile``'s devices and, with
    ``timeline``, writes every simulated transfer there as a Chrome trace.

    ``progress``: a bar on stderr (None: when stderr is a terminal).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    if mode != "timing":
        if timeline is not None:
            raise ValueError("a timeline needs the timing mode")
        return hitrate_result(inp, replay_hitrate(inp, progress=progress))
    if profile is None:
        raise ValueError("the timing mode needs a hardware profile")
    from .timing import replay_timing

    timed = replay_timing(inp, profile, progress=progress, record_transfers=timeline is not None)
    if timeline is not None:
        from flexkv_engine.timeline import write_chrome_trace

        write_chrome_trace(timed.transfers or [], timeline, process_name=TOOL)
    return timing_result(inp, timed, profile.names)
