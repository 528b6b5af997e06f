"""Writing a replay's result directory (read back by reports and comparisons).

``summary.json``; ``requests.csv`` (or ``.parquet``), one row per request;
``utilisation.csv`` (timing mode), busy fraction and bytes of each link per time bin;
``config.json``, the resolved config the run used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flexkv_engine.cli_common import write_json
from flexkv_engine.config import Config, config_to_dict

from .devices import FluidLink

RECORD_FORMATS = ("csv", "parquet")


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
    """Write every result file into ``out`` (created if missing); returns ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", config_to_dict(config))
    frame = pd.DataFrame.from_records(list(records), columns=list(columns))
    if records_format == "parquet":
        frame.to_parquet(out / "requests.parquet", index=False)
    else:
        frame.to_csv(out / "requests.csv", index=False)
    if links is not None:
        utilisation_frame(links).to_csv(out / "utilisation.csv", index=False)
    return out


def utilisation_frame(links: Mapping[str, FluidLink]) -> Any:
    """Busy fraction and bytes of each link per time bin, as a DataFrame."""
    import pandas as pd

    rows = []
    for path, link in links.items():
        width = link.bin_s
        for b in sorted(set(link.busy_bins) | set(link.byte_bins)):
            rows.append(
                (
                    b * width,
                    (b + 1) * width,
                    path,
                    min(link.busy_bins.get(b, 0.0) / width, 1.0),
                    link.byte_bins.get(b, 0),
                )
            )
    return pd.DataFrame(rows, columns=["t_start", "t_end", "path", "busy_fraction", "bytes"])
