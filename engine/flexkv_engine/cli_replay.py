"""``flexkv-run replay``: a trace on real hardware, every loaded block checked."""

from __future__ import annotations

import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

import click

from .cli_common import (
    echo_json,
    exit_on_bad_input,
    print_summary,
    progress_option,
    trace_options,
)
from .replay_input import ReplayInput, prepare_replay
from .results import RECORD_FORMATS, write_results

if TYPE_CHECKING:
    from .hw_replay import HardwareRun


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


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    from .hw_replay import run_replay

    pace = _speed(speed)
    inp = prepare_replay(
        trace,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
    )
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        bar = tqdm(total=len(inp.requests), desc="replay", unit="req", file=sys.stderr, delay=1.0)
    with ExitStack() as stack:
        trace_path = run_dir / "trace.jsonl" if run_dir is not None else None
        # enable_trace: the tracer's file is written too (a copy of the run's trace when
        # --out is given), with every request record, so that it replays.
        also_trace = (
            Path(inp.config.cache_config.trace_file_path)
            if inp.config.cache_config.enable_trace
            else None
        )
        if trace_path is None and also_trace is not None:
            trace_path, also_trace = also_trace, None
        if timeline is not None and trace_path is None:
            trace_path = Path(stack.enter_context(TemporaryDirectory())) / "trace.jsonl"
        metrics = None
        if metrics_port is not None:
            from .metrics import Metrics

            metrics = stack.enter_context(Metrics())
            port = metrics.serve(metrics_port)
            click.echo(f"flexkv-run: metrics on http://127.0.0.1:{port}/metrics", err=True)
        try:
            run = run_replay(
                inp,
                device=device or _default_device(),
                speed=pace,
                prefill=prefill,
                trace_path=trace_path,
                ssd_backend=ssd_backend,
                progress=bar,
                metrics=metrics,
            )
        finally:
            if bar is not None:
                bar.close()
        if also_trace is not None and trace_path is not None:
            also_trace.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trace_path, also_trace)
            click.echo(
                f"flexkv-run: enable_trace: the trace is in {trace_path} and, as "
                f"trace_file_path asks, in {also_trace}",
                err=True,
            )
        if timeline is not None:
            from .timeline import read_transfers, write_chrome_trace

            assert trace_path is not None
            write_chrome_trace(read_transfers(trace_path), timeline, process_name="flexkv-run")
    report_path = _write_run(run, inp, run_dir, records_format, report=report)
    for warning in run.summary["warnings"]:
        click.echo(f"flexkv-run: warning: {warning}", err=True)
    if as_json:
        echo_json(run.summary)
    else:
        integrity = f"{run.summary['integrity_failures']} failures"
        print_summary(run.summary, out, report_path, rows=(("integrity", integrity),))
    for failure in run.failures[:20]:
        click.echo(f"flexkv-run: integrity: {failure}", err=True)
    if run.failures:
        sys.exit(1)


def _write_run(
    run: HardwareRun,
    inp: ReplayInput,
    run_dir: Path | None,
    records_format: str,
    *,
    report: bool,
) -> Path | None:
    """Explain the run into its summary; with ``--out``, write the run directory and its
    report. Returns the report's path, if written."""
    # The twin explains the run (one pass over the trace for the capacity curve, the
    # doctor's rules, no replay) and draws the report: imported here only, so the
    # engine's runtime never loads it.
    from flexkv_sim.doctor.why import add_why

    from .hw_replay import RUN_COLUMNS

    why = add_why(inp, run.summary)
    if run_dir is None:
        return None
    write_results(
        run_dir, run.summary, run.records, RUN_COLUMNS, inp.config, records_format=records_format
    )
    why.write_curve(run_dir)
    if not report:
        return None
    from flexkv_sim.report import write_report

    return write_report(run_dir)
