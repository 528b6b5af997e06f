"""A replay's result directory, the same for ``flexkv-sim`` and ``flexkv-run`` (torch-free).

``summary.json``; ``requests.csv`` (or ``requests.parquet``), one row per request;
``config.json``, the resolved config the run used. Reports and comparisons read only
these files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_common import write_json
from .config import Config, config_to_dict

RECORD_FORMATS = ("csv", "parquet")


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
