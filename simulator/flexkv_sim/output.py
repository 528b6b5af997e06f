"""Writing a replay's result directory (read back by reports and comparisons).

``summary.json``; ``requests.csv`` (or ``.parquet``), one row per request;
``utilisation.csv`` (timing mode), busy fraction and bytes of each link per time bin;
``config.json``, the resolved config the run used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flexkv_engine.config import Config
from flexkv_engine.results import RECORD_FORMATS, write_results

from .devices import FluidLink

__all__ = ["RECORD_FORMATS", "utilisation_frame", "write_run_dir"]


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
