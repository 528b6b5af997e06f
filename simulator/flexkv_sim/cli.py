"""``flexkv-sim``: replay traces in the twin to predict hit rate and latency.

Commands are thin: parse options, call one library function, write files.
"""

from __future__ import annotations

import sys

import click

from flexkv_engine.cli_common import (
    echo_json,
    exit_on_bad_input,
    print_summary,
    progress_option,
    trace_options,
)
from flexkv_engine.replay_input import prepare_replay

from . import __version__
from .cli_analysis import register as register_analysis
from .cli_calibrate import calibrate, validate
from .cli_shared import shared
from .cli_trace import trace
from .hardware import DEFAULT_PROFILES, HITRATE_HARDWARE_NOTE, load_profiles
from .output import RECORD_FORMATS, write_replay
from .replay.run import run_replay


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flexkv-sim")
def main() -> None:
    """The FlexKV twin: predict hit rate and latency of a configuration from a trace."""


@main.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
@trace_options
@click.option(
    "--mode",
    type=click.Choice(["hitrate", "timing"]),
    default="hitrate",
    show_default=True,
    help="hitrate: no timing, each GET then PUT completes at once, in time order (fast). "
    "timing: SimPy model of PCIe, SSD, network and the GPU's prefill (latency and TTFT).",
)
@click.option(
    "--hardware",
    "hardware",
    multiple=True,
    metavar="PROFILE",
    help="Hardware profile name in scenarios/hardware or a YAML path; repeat to merge "
    f"(later wins). Default: {' '.join(DEFAULT_PROFILES)}. Checked in both modes; only "
    "timing uses it (hit rates do not depend on the hardware).",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary JSON to stdout.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write summary.json, requests.csv, utilisation.csv, capacity_curve.csv, config.json, "
    "report.html and plotly.min.js here.",
)
@click.option(
    "--records",
    "records_format",
    type=click.Choice(RECORD_FORMATS),
    default="csv",
    show_default=True,
    help="Format of the per-request records in --out.",
)
@click.option("--report/--no-report", default=True, help="Write report.html into --out.")
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Timing mode: write every simulated transfer as a Chrome trace (JSON) for "
    "Perfetto or chrome://tracing, one track per path.",
)
@progress_option
@exit_on_bad_input
def replay(
    trace: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    mode: str,
    hardware: tuple[str, ...],
    as_json: bool,
    out: str | None,
    records_format: str,
    report: bool,
    timeline: str | None,
    progress: bool | None,
) -> None:
    """Replay TRACE through the core's planner and report hit rate (and latency).

    Requests run in timestamp order: match in the serving engine's GPU prefix cache
    (serving_config.num_gpu_blocks), FlexKV GET, prefill, write-through PUT, decode.
    Without --config only a CPU tier is configured (16 GiB of the default model layout,
    or --set cache_config.num_cpu_blocks=N). A coarser --set
    cache_config.tokens_per_block re-blocks the trace exactly; a finer one is refused.
    A bad --hardware profile is an error (exit 2) in either mode.
    """
    # Loaded, hence checked, before the trace is read; hit-rate mode then leaves it be.
    profile = load_profiles(hardware or DEFAULT_PROFILES) if hardware or mode == "timing" else None
    if hardware and mode != "timing":
        click.echo(f"flexkv-sim: note: {HITRATE_HARDWARE_NOTE}", err=True)
    inp = prepare_replay(
        trace,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
    )
    if timeline is not None and mode != "timing":
        raise click.UsageError("--timeline needs --mode timing")
    result = run_replay(inp, mode=mode, profile=profile, progress=progress, timeline=timeline)
    summary, report_path = write_replay(result, out, records_format=records_format, report=report)
    for warning in summary["warnings"]:
        click.echo(f"flexkv-sim: warning: {warning}", err=True)
    if as_json:
        echo_json(summary)
        return
    print_summary(summary, out, report_path)


main.add_command(trace)
register_analysis(main)
main.add_command(calibrate)
main.add_command(validate)
main.add_command(shared)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
