"""``flexkv-sim``: replay traces in the twin to predict hit rate and latency.

Commands are thin: parse options, call one library function, write files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flexkv_engine.cli_common import echo_json, exit_on_bad_input, trace_options
from flexkv_engine.replay_input import prepare_replay

from . import __version__
from .cli_trace import trace
from .output import write_run_dir
from .replay import replay_hitrate
from .summary import build_summary


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flexkv-sim")
def main() -> None:
    """The FlexKV twin: predict hit rate and latency of a configuration from a trace."""


@main.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
@trace_options
@click.option(
    "--mode", type=click.Choice(["hitrate"]), default="hitrate", show_default=True,
    help="hitrate: no timing, every GET then PUT completes at once, in time order.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary JSON to stdout.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None,
    help="Write summary.json, requests.csv and the resolved config.json here.",
)
@click.option(
    "--progress/--no-progress", default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
@exit_on_bad_input
def replay(
    trace: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    mode: str,
    as_json: bool,
    out: str | None,
    progress: bool | None,
) -> None:
    """Replay TRACE through the core's planner and report the hit rate.

    Requests are replayed in timestamp order; each GET is followed by the write-through
    PUT of the request's blocks. Without --config only a CPU tier is configured (16 GiB
    of the default model layout, or --set cache_config.num_cpu_blocks=N).
    """
    inp = prepare_replay(
        trace, trace_format=trace_format, block_size=block_size,
        config_path=config_path, overrides=overrides,
    )
    result = replay_hitrate(inp, progress=progress)
    summary = build_summary(
        inp, result.planner, tool="flexkv-sim", mode=mode, wall_s=result.wall_s
    )
    if out is not None:
        write_run_dir(Path(out), summary, result.records, inp.config)
    if as_json:
        echo_json(summary)
        return
    _print_human(summary, out)


def _print_human(summary: dict, out: str | None) -> None:
    by_tier = summary["hit_rate_by_tier"]
    click.echo(f"requests        {summary['requests']}")
    click.echo(f"prompt tokens   {summary['prompt_tokens']}")
    click.echo(f"hit rate        {summary['hit_rate']:.4f}  (CPU + SSD + remote / prompt tokens)")
    tiers = "  ".join(f"{t} {r:.4f}" for t, r in by_tier.items())
    click.echo(f"by tier         {tiers}")
    click.echo(f"load / replay   {summary['load_s']:.3f} s / {summary['wall_s']:.3f} s")
    if out is not None:
        click.echo(f"results in      {out}", err=False)


main.add_command(trace)
if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
