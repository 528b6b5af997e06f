"""``flexkv-run replay``: a trace on real hardware, every loaded block checked."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_common import (
    echo_json,
    exit_on_bad_input,
    print_summary,
    progress_option,
    trace_options,
)
from .replay_input import prepare_replay
from .results import RECORD_FORMATS


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'max'") from None
    if speed <= 0:
        raise click.BadParameter("must be > 0")
    return speed


@click.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
@trace_options
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="Where the serving engine's KV cache lives (default: cuda when present).",
)
@click.option(
    "--speed",
    default="1",
    show_default=True,
    metavar="X|max",
    help="Replay X times faster than the trace's timestamps; 'max': one request "
    "at a time in trace order (deterministic hits, equal to the twin's hitrate mode).",
)
@click.option(
    "--prefill",
    type=click.Choice(["none", "model"]),
    default="none",
    show_default=True,
    help="none: fill missed blocks at once; model: hold each "
    "request for the compute model's prefill and decode time (serving_config.compute).",
)
@click.option(
    "--ssd-backend",
    type=click.Choice(["auto", "io_uring", "threads"]),
    default="auto",
    show_default=True,
    help="SSD I/O: io_uring, or pread/pwrite threads.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary JSON to stdout.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write summary.json, requests.csv, config.json, trace.jsonl (with every "
    "transfer: what the twin needs to reproduce and calibrate the run), "
    "capacity_curve.csv, report.html and plotly.min.js here.",
)
@click.option(
    "--records",
    "records_format",
    type=click.Choice(RECORD_FORMATS),
    default="csv",
    show_default=True,
)
@click.option("--report/--no-report", default=True, help="Write report.html into --out.")
@progress_option
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Write every transfer as a Chrome trace (JSON) for Perfetto or "
    "chrome://tracing: one track per path.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="N",
    help="Serve Prometheus metrics on http://127.0.0.1:N/metrics while the replay "
    "runs (0: a free port, printed on stderr).",
)
@exit_on_bad_input
def replay(
    trace: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    device: str | None,
    speed: str,
    prefill: str,
    ssd_backend: str,
    as_json: bool,
    out: str | None,
    records_format: str,
    report: bool,
    progress: bool | None,
    timeline: str | None,
    metrics_port: int | None,
) -> None:
    """Replay TRACE through the real engine as an emulated serving engine would.

    Each request: match the GPU prefix cache (serving_config.num_gpu_blocks), GET from
    CPU/SSD into its GPU blocks, check every loaded block byte for byte, fill the missed
    blocks with bytes derived from their keys, PUT through every tier. Exits with status
    1 naming the block and tier when a check fails.
    """
    from .hw_replay import RunOptions, replay_on_hardware

    pace = _speed(speed)
    inp = prepare_replay(
        trace,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
    )
    options = RunOptions(
        device=device,
        speed=pace,
        prefill=prefill,
        ssd_backend=ssd_backend,
        progress=progress,
        out=Path(out) if out is not None else None,
        timeline=Path(timeline) if timeline is not None else None,
        metrics_port=metrics_port,
    )
    run = replay_on_hardware(
        inp, options, notice=lambda line: click.echo(f"flexkv-run: {line}", err=True)
    )
    # The twin explains the run (one pass over the trace for the capacity curve, the
    # doctor's rules, no replay) and draws the report: imported here only, so the
    # engine's runtime never loads it.
    from flexkv_sim.output import write_replay

    summary, report_path = write_replay(
        run.result, out, records_format=records_format, report=report
    )
    for warning in summary["warnings"]:
        click.echo(f"flexkv-run: warning: {warning}", err=True)
    if as_json:
        echo_json(summary)
    else:
        integrity = f"{summary['integrity_failures']} failures"
        print_summary(summary, out, report_path, rows=(("integrity", integrity),))
    for failure in run.failures[:20]:
        click.echo(f"flexkv-run: integrity: {failure}", err=True)
    if run.failures:
        sys.exit(1)
