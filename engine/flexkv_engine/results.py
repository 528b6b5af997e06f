"""A finished replay and its result directory, the same for ``flexkv-sim`` and ``flexkv-run``.

:class:`ReplayResult` is what a replay produced, in either tool; its ``summary()`` is
``summary.json``, the one place a summary is put together (the CLIs, sweeps and the
doctor all read theirs from it). The directory: ``summary.json``; ``requests.csv`` (or
``requests.parquet``), one row per request; ``config.json``, the resolved config the run
used. Reports and comparisons read only these files. Torch-free: the twin imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .cli_common import write_json
from .config import Config, config_to_dict
from .summary import build_summary, timing_section

if TYPE_CHECKING:
    from .core.planner import Planner
    from .replay_input import ReplayInput

RECORD_FORMATS = ("csv", "parquet")


class Explanation(Protocol):
    """Why a replay's hit rate is what it is (``flexkv_sim.doctor.why.Why``)."""

    def summary_fields(self) -> dict[str, Any]:
        """The keys it adds to ``summary.json``, after the replay's own."""
        ...


@dataclass(frozen=True)
class LinkTiming:
    """The twin's timing mode: its links (each with ``busy_s`` and ``ops``), the simulated
    span and the hardware profiles used."""

    links: Mapping[str, Any]
    span_s: float
    hardware: tuple[str, ...]


@dataclass(eq=False)
class ReplayResult:
    """What a finished replay produced: its input, planner (with its stats), records.

    ``sections`` are a tool's own keys of the summary, in order (the engine's integrity,
    device, pacing and latency); ``timing`` the twin's links in timing mode, from which
    the summary gets latency, utilisation and span; ``why``, once the replay is explained,
    adds its keys last.
    """

    inp: ReplayInput
    planner: Planner
    tool: str
    mode: str
    wall_s: float
    records: list[tuple[Any, ...]] = field(default_factory=list)  # rows of ``columns``
    columns: tuple[str, ...] = ()
    seed: int | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    timing: LinkTiming | None = None
    why: Explanation | None = None

    def summary(self) -> dict[str, Any]:
        """``summary.json`` of this replay (a new dict on every call)."""
        extra = dict(self.sections)
        if self.timing is not None:
            t = self.timing
            extra.update(timing_section(self.records, self.columns, t.links, t.span_s, t.hardware))
        summary = build_summary(
            self.inp,
            self.planner,
            tool=self.tool,
            mode=self.mode,
            wall_s=self.wall_s,
            seed=self.seed,
            extra=extra,
        )
        if self.why is not None:
            summary.update(self.why.summary_fields())
        return summary


def write_results(
    out: Path,
    summary: dict[str, Any],
    records: Sequence[Sequence[Any]],
    columns: Sequence[str],
    config: Config,
    *,
    records_format: str = "csv",
) -> Path:
    """Write the summary, per-request records and resolved config into ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", config_to_dict(config))
    frame = pd.DataFrame.from_records(list(records), columns=list(columns))
    if records_format == "parquet":
        frame.to_parquet(out / "requests.parquet", index=False)
    else:
        frame.to_csv(out / "requests.csv", index=False)
    return out
