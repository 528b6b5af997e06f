"""Writing a replay's result directory (read back by reports and comparisons).

``summary.json``; ``requests.csv`` (or ``.parquet``), one row per request;
``utilisation.csv`` (timing mode), busy fraction and bytes of each link per time bin;
``config.json``, the resolved config the run used; ``capacity_curve.csv`` and
``report.html``. :func:`write_replay` is what both ``replay`` commands do with their
result, the twin's and the engine's alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flexkv_engine.config import Config
from flexkv_engine.results import RECORD_FORMATS, ReplayResult, write_results

if TYPE_CHECKING:
    from .devices import FluidLink

__all__ = ["RECORD_FORMATS", "utilisation_frame", "write_replay", "write_run_dir"]


def write_replay(
    result: ReplayResult,
    out: str | Path | None,
    *,
    records_format: str = "csv",
    report: bool = True,
) -> tuple[dict[str, Any], Path | None]:
    """Explain ``result`` (the why lines join its summary); with ``out``, write the run
    directory, its capacity curve and (with ``report``) its report.

    Returns the summary, as written, and the report's path when there is one.
    """
    # The explanation is one pass over the trace (the capacity curve) and the doctor's
    # rules; no replay.
    from .doctor.why import add_why

    why = add_why(result)
    summary = result.summary()
    if out is None:
        return summary, None
    links = result.timing.links if result.timing is not None else None
    run_dir = write_run_dir(
        Path(out),
        summary,
        result.records,
        result.columns,
        result.inp.config,
        links=links,
        records_format=records_format,
    )
    why.write_curve(run_dir)
    if not report:
        return summary, None
    from .report import write_report

    return summary, write_report(run_dir)


def write_run_dir(
    out: Path,
    summary: dict[str, Any],
    records: Sequence[Sequence[Any]],
    columns: Sequence[str],
    config: Config,
    *,
    links: Mapping[str, FluidLink] | None = None,
    records_format: str = "csv",
) -> Path:
    """The engine's result files, plus ``utilisation.csv`` of the twin's links."""
    write_results(out, summary, records, columns, config, records_format=records_format)
    if links is not None:
        utilisation_frame(links).to_csv(out / "utilisation.csv", index=False)
    return out


def utilisation_frame(links: Mapping[str, FluidLink]) -> Any:
    """Busy fraction and bytes of each link per time bin, as a DataFrame."""
    import pandas as pd

    rows = [
        (
            b * link.bin_s,
            (b + 1) * link.bin_s,
            path,
            min(link.busy_bins.get(b, 0.0) / link.bin_s, 1.0),
            link.byte_bins.get(b, 0),
        )
        for path, link in links.items()
        for b in sorted(set(link.busy_bins) | set(link.byte_bins))
    ]
    return pd.DataFrame(rows, columns=["t_start", "t_end", "path", "busy_fraction", "bytes"])
