"""Writing a replay's result directory: summary, per-request records, resolved config."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexkv_engine.cli_common import write_json
from flexkv_engine.config import Config, config_to_dict

from .replay.hitrate import RECORD_COLUMNS


def write_run_dir(
    out: Path, summary: dict[str, Any], records: Sequence[tuple], config: Config
) -> None:
    """``summary.json``, ``requests.csv`` (one row per request) and ``config.json``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "config.json", config_to_dict(config))
    with (out / "requests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(RECORD_COLUMNS)
        writer.writerows(records)
