"""``flexkv-sim curve``, ``sweep`` and ``compare``: analyses over many configurations.

Thin commands: parse, call one library function, write files. Progress and summaries go
to stderr where stdout carries data (``curve`` prints its table, ``--json`` its JSON).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flexkv_engine.cli_common import echo_json, exit_on_bad_input, progress_option, trace_options
from flexkv_engine.replay_input import prepare_replay

from .hardware import DEFAULT_PROFILES

# As in flexkv_sim.curve, which is imported only when the command runs (numpy); a test
# checks that they agree.
CURVE_TIERS = ("cpu", "ssd", "remote")
POINT_KINDS = ("changes", "corners")


# `sweep` and `doctor` take a scenario file, or a trace with the options of `replay`.
scenario_or_trace_argument = click.argument(
    "path", metavar="SCENARIO|TRACE", type=click.Path(exists=True, dir_okay=False)
)
hardware_option = click.option(
    "--hardware",
    multiple=True,
    metavar="PROFILE",
    help="Hardware profile name in scenarios/hardware or a YAML path; repeat to merge "
    "(later wins). Default: the scenario's `hardware`, else "
    f"{' '.join(DEFAULT_PROFILES)}.",
)


def register(group: click.Group) -> None:
    """Add the analysis commands to ``flexkv-sim``."""
    for command in (curve, sweep, compare, doctor):
        group.add_command(command)


@click.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
@trace_options
@click.option(
    "--tier",
    type=click.Choice(CURVE_TIERS),
    default="cpu",
    show_default=True,
    help="Tier whose capacity varies. ssd: the SSD tier behind the CPU tier at "
    "num_cpu_blocks; remote: the remote tier behind CPU and SSD at their configured "
    "sizes. Each curve is that tier's share of the prompt tokens "
    "(hit_rate_by_tier.<tier> of flexkv-sim replay).",
)
@click.option(
    "--points",
    "kind",
    type=click.Choice(POINT_KINDS),
    default="changes",
    show_default=True,
    help="changes: a row wherever the hit rate changes. corners: a row only where "
    "its slope changes (between two rows it grows linearly, exactly): far fewer "
    "rows at fine block sizes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the curve as JSON to stdout.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write curve.csv, curve.json and curve.html (plot) here.",
)
@progress_option
@exit_on_bad_input
def curve(
    trace: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    tier: str,
    kind: str,
    as_json: bool,
    out: str | None,
    progress: bool | None,
) -> None:
    """LRU hit rate of a tier at EVERY capacity, in one pass over TRACE.

    Stack distances (Mattson) with the replay's semantics (hitrate mode, plain LRU,
    evict_ratio 0): the hit rate at capacity C equals the tier's share in flexkv-sim
    replay --set cache_config.num_<tier>_blocks=C (with the tier enabled). The table
    (capacity_blocks, hit_rate) goes to stdout as CSV, a summary to stderr.
    """
    from .curve import curve_summary, curve_table, hit_rate_curve, write_curve_dir

    inp = prepare_replay(
        trace,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
    )
    result = hit_rate_curve(inp, tier=tier, progress=progress)
    if out is not None:
        write_curve_dir(
            Path(out), result, kind, trace=inp.trace_path, trace_name=Path(inp.trace_path).name
        )
    if as_json:
        summary = curve_summary(result, kind)
        summary["trace"] = inp.trace_path
        echo_json(summary)
    else:
        caps, rates = curve_table(result, kind)
        lines = ["capacity_blocks,hit_rate"]
        lines += [f"{c},{r!r}" for c, r in zip(caps.tolist(), rates.tolist(), strict=True)]
        sys.stdout.write("\n".join(lines) + "\n")
    cc = inp.config.cache_config
    others = [t for t in ("ssd", "remote") if cc.tier_enabled(t)]
    tell = [
        (
            f"{result.requests} requests, {result.distinct_blocks} distinct blocks of "
            f"{result.tokens_per_block} tokens, {tier} curve in {result.wall_s:.3f} s"
        ),
        (
            f"{tier} tier: infinite-cache hit rate {result.max_hit_rate:.4f} from "
            f"{result.max_capacity} blocks; 90% of it from {result.capacity_for(0.9)} blocks"
        ),
    ]
    if result.configured_blocks is not None:
        tell.append(
            f"configured num_{tier}_blocks={result.configured_blocks}: "
            f"{tier} hit rate {result.hit_rate_at(result.configured_blocks):.4f}"
        )
    if tier == "cpu" and others:
        tell.append(
            f"note: {' and '.join(others)} enabled: the curve is the CPU tier's "
            "share (hit_rate_by_tier.cpu), not the total hit rate"
        )
    elif tier != "cpu":
        front = " and ".join(f"{t.upper()} {n}" for t, n in result.behind_blocks.items())
        keys = ", ".join(f"num_{t}_blocks" for t in result.behind_blocks)
        tell.append(
            f"note: the curve is the {tier} tier's share (hit_rate_by_tier.{tier}) behind "
            f"{front} blocks ({keys}); a request passes at most num_cpu_blocks blocks down"
        )
    if tier == "remote":
        tell.append(
            "note: the remote store keeps what the remote index evicts, and a GET adopts "
            "it back, so num_remote_blocks bounds only how many blocks one request loads "
            "from it; remote_store_capacity_gb bounds the store"
        )
    if out is not None:
        tell.append(f"results in {out} (curve.csv, curve.json, curve.html)")
    for line in tell:
        click.echo(line, err=True)


@click.command()
@scenario_or_trace_argument
@trace_options
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A config key path (as --set takes it) or 'hardware' (profiles joined "
    "with '+'), and its values; repeat for a cartesian grid.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (or Ray actors); each loads the trace once.",
)
@click.option(
    "--mode",
    type=click.Choice(["hitrate", "timing"]),
    default=None,
    help="Replay mode (default: the scenario's, else hitrate).",
)
@hardware_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Result directory [default: runs/<name>-sweep, the scenario's name or the "
    "trace file's stem].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: a process pool. ray: Ray actors (optional "
    "dependency; a local Ray instance unless --address).",
)
@click.option("--address", default=None, help="Ray cluster address (ray.init(address=...)).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON to stdout.")
@exit_on_bad_input
def sweep(
    path: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    grid: tuple[str, ...],
    jobs: int,
    mode: str | None,
    hardware: tuple[str, ...],
    out: str | None,
    executor: str,
    address: str | None,
    as_json: bool,
) -> None:
    """Replay a scenario or a TRACE at every point of a grid of config overrides, in parallel.

    The argument is a scenario file (schema in flexkv_sim/sweep/SCHEMA.md: trace or
    workload, config, hardware, mode), or a trace with --config, --set, --format and
    --block-size as flexkv-sim replay takes them (a scenario names those itself).
    Writes results.csv, results.parquet, results.json (schema) and dashboard.html.

    \b
    Examples:
      flexkv-sim sweep chat.yaml --grid cache_config.num_cpu_blocks=1000,4000,16000 \\
          --grid cache_config.tokens_per_block=16,64 --jobs 2 --out runs/chat-sweep
      flexkv-sim sweep chat.jsonl --config base.json \\
          --grid cache_config.num_cpu_blocks=1000,4000,16000
    """
    from .sweep import (
        SweepError,
        load_scenario_or_trace,
        parse_grid,
        run_sweep,
        write_dashboard,
        write_results,
    )

    spec = load_scenario_or_trace(
        path,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
        hardware=hardware,
    )
    axes = parse_grid(grid)
    out_dir = Path(out) if out is not None else Path("runs") / f"{spec.name}-sweep"

    def tell(row: dict) -> None:
        values = ", ".join(f"{k}={row[k]}" for k, _ in axes)
        click.echo(
            f"point {row['point']}: {values or '(base)'}: hit rate "
            f"{row['hit_rate']:.4f} ({row['wall_s']:.2f} s)",
            err=True,
        )

    try:
        result = run_sweep(
            spec, axes, jobs=jobs, mode=mode, executor=executor, address=address, on_row=tell
        )
    except SweepError as exc:
        click.echo(f"flexkv-sim: error: {exc}", err=True)
        sys.exit(2)
    write_results(out_dir, result, spec)
    dashboard = write_dashboard(out_dir)
    if as_json:
        echo_json(result.rows)
    click.echo(
        f"{len(result.rows)} points in {result.wall_s:.1f} s "
        f"({result.executor}, {result.jobs} jobs)",
        err=as_json,
    )
    click.echo(f"results in {out_dir} (results.csv, results.parquet, results.json)", err=as_json)
    click.echo(f"dashboard {dashboard}", err=as_json)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--labels", default=None, help="Comma-separated names of the runs, in order.")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML page to write."
)
@exit_on_bad_input
def compare(run_dirs: tuple[str, ...], labels: str | None, output: str) -> None:
    """One page comparing the replays in RUN_DIR... (result directories of --out)."""
    from .report import write_comparison

    names = [s.strip() for s in labels.split(",")] if labels is not None else None
    try:
        path = write_comparison([Path(d) for d in run_dirs], Path(output), names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--labels") from None
    click.echo(f"comparison {path}")


@click.command()
@scenario_or_trace_argument
@trace_options
@hardware_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON to stdout.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write doctor.json and doctor.md here.",
)
@click.option(
    "--timing/--no-timing",
    default=True,
    show_default=True,
    help="Check transfer latencies with timing-mode replays on the hardware profiles.",
)
@exit_on_bad_input
def doctor(
    path: str,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    hardware: tuple[str, ...],
    as_json: bool,
    out: str | None,
    timing: bool,
) -> None:
    """The operator guide's troubleshooting, applied to a scenario or a TRACE.

    Grades the hit rate, separates workload reuse, capacity misses, eviction settings
    and block size, checks transfer latency per block and memory per tier, and gives
    each suggested change with its effect predicted by replaying it in the twin.
    The argument is a scenario file (schema in flexkv_sim/sweep/SCHEMA.md), or a trace
    with --config, --set, --format and --block-size as flexkv-sim replay takes them.

    \b
    Examples:
      flexkv-sim doctor scenarios/tuning/capacity-before.yaml
      flexkv-sim doctor chat.jsonl --config base.json --hardware h100-sxm-pcie5
    """
    from .doctor import diagnose, render_text, write_doctor_dir
    from .sweep import load_scenario_or_trace

    scenario = load_scenario_or_trace(
        path,
        trace_format=trace_format,
        block_size=block_size,
        config_path=config_path,
        overrides=overrides,
        hardware=hardware,
    )
    report = diagnose(scenario, timing=timing)
    if out is not None:
        write_doctor_dir(Path(out), report)
    if as_json:
        echo_json(report)
    else:
        sys.stdout.write(render_text(report))
    if out is not None:
        click.echo(f"report in {out} (doctor.json, doctor.md)", err=True)
