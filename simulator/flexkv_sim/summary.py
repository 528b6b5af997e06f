"""The twin's part of ``summary.json``: latency percentiles and link utilisation."""

from __future__ import annotations

from typing import Any

from flexkv_engine.summary import SUMMARY_SCHEMA_VERSION, build_summary, percentiles

__all__ = ["SUMMARY_SCHEMA_VERSION", "build_summary", "percentiles", "timing_section"]


def timing_section(
    records: list[tuple[Any, ...]],
    columns: tuple[str, ...],
    links: Any,
    span_s: float,
    hardware: tuple[str, ...],
) -> dict[str, Any]:
    """Latency percentiles, link utilisation and span of a timing replay."""
    index = {name: i for i, name in enumerate(columns)}
    gets = [r for r in records if r[index["op"]] == "get"]
    latency = {
        name: percentiles([r[index[name]] for r in gets])
        for name in ("get_s", "ttft_s", "queue_s", "prefill_s", "put_s")
    }
    return {
        "latency": latency,
        "span_s": span_s,
        "link_utilisation": {
            path: (link.busy_s / span_s if span_s > 0 else 0.0) for path, link in links.items()
        },
        "link_ops": {path: link.ops for path, link in links.items()},
        "hardware": list(hardware),
    }
