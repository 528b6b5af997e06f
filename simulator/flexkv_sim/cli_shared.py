"""``flexkv-sim shared``: several engine instances on one remote store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from flexkv_engine.cli_common import echo_json, exit_on_bad_input, trace_options, write_json
from flexkv_engine.core.paths import CACHE_TIERS
from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.summary import percentiles

from .hardware import DEFAULT_PROFILES, HITRATE_HARDWARE_NOTE, load_profiles
from .replay.shared import ROUTES, SharedResult, replay_shared_hitrate, replay_shared_timing, route
from .replay.timing import TIMING_COLUMNS


@click.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A scenario file (the sweep's schema: trace or workload, config, hardware, mode) "
    "in place of TRACE and --config.",
)
@trace_options
@click.option(
    "--instances",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Engine instances the requests are routed to.",
)
@click.option(
    "--route",
    "how",
    type=click.Choice(ROUTES),
    default="round-robin",
    show_default=True,
    help="round-robin: request i goes to instance i mod N (no affinity). "
    "prefix: by the first block key (conversation or system-prompt affinity).",
)
@click.option(
    "--mode",
    type=click.Choice(["hitrate", "timing"]),
    default=None,
    help="As for `flexkv-sim replay` (default: the scenario's, else hitrate).",
)
@click.option(
    "--hardware",
    multiple=True,
    metavar="PROFILE",
    help=f"Timing mode: hardware profiles (default: {' '.join(DEFAULT_PROFILES)}). "
    "Checked in both modes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary JSON.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Write summary.json here."
)
@exit_on_bad_input
def shared(
    trace: str | None,
    scenario: str | None,
    trace_format: str | None,
    block_size: int | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    instances: int,
    how: str,
    mode: str | None,
    hardware: tuple[str, ...],
    as_json: bool,
    out: str | None,
) -> None:
    """Replay TRACE on several instances sharing one remote store, and without sharing.

    Each instance has the configured GPU prefix cache, CPU, SSD and remote index; the
    remote store (cache_config.enable_remote, remote_store_capacity_gb) is one for all
    of them, so an instance hits blocks another stored. The same replay with a store per
    instance is the baseline. The config must enable the remote tier.

    Example: flexkv-sim shared --scenario scenarios/sharing/two-instances.yaml
    """
    if (trace is None) == (scenario is None):
        raise click.UsageError("give either TRACE or --scenario")
    given = hardware
    if scenario is not None:
        from flexkv_engine.config.loader import parse_overrides

        from .sweep.scenario import load_scenario, load_trace, point_config, prepare_point

        spec = load_scenario(scenario)
        config = point_config(spec, parse_overrides(overrides))
        inp = prepare_point(load_trace(spec), config, {})
        mode = mode or spec.mode
        hardware = hardware or spec.hardware
    else:
        assert trace is not None
        inp = prepare_replay(
            trace,
            trace_format=trace_format,
            block_size=block_size,
            config_path=config_path,
            overrides=overrides,
        )
    mode = mode or "hitrate"
    # Checked in both modes (a bad profile is an error); only timing uses it.
    profile = load_profiles(hardware or DEFAULT_PROFILES) if hardware or mode == "timing" else None
    if given and mode != "timing":
        click.echo(f"flexkv-sim: note: {HITRATE_HARDWARE_NOTE}", err=True)
    if not inp.config.cache_config.enable_remote:
        raise click.UsageError(
            "the config has no remote tier: set cache_config.num_remote_blocks (or remote_cache_gb)"
        )
    parts = route(inp, instances, how)
    runs = {}
    for label, share in (("shared", True), ("private", False)):
        if mode == "timing":
            assert profile is not None
            runs[label] = replay_shared_timing(parts, profile, shared=share)
        else:
            runs[label] = replay_shared_hitrate(parts, shared=share)
    summary = {
        "tool": "flexkv-sim",
        "command": "shared",
        "mode": mode,
        "instances": instances,
        "route": how,
        "trace": inp.trace_path,
        **{label: describe(result, mode) for label, result in runs.items()},
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "summary.json", summary)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{instances} instances, route {how}, {mode} mode")
    for label in ("shared", "private"):
        s = summary[label]
        per = "  ".join(f"{r['hit_rate']:.4f}" for r in s["per_instance"])
        click.echo(
            f"{label:<8} hit rate {s['hit_rate']:.4f} (remote {s['hit_rate_remote']:.4f})"
            f"  per instance: {per}  adopted blocks {s['adopted_blocks']}"
        )
    if out is not None:
        click.echo(f"summary written to {Path(out) / 'summary.json'}")


def describe(result: SharedResult, mode: str) -> dict[str, Any]:
    """Overall and per-instance hit rates (token-weighted) of a shared replay."""
    per, prompt, served, remote, foreign = [], 0, 0, 0, 0
    for run in result.instances:
        s = run.planner.stats
        prompt += s.prompt_tokens
        served += s.flexkv_tokens
        remote += s.tokens_by_tier["remote"]
        foreign += s.adopted_blocks
        row: dict[str, Any] = {
            "gets": s.gets,
            "hit_rate": s.hit_rate,
            "hit_rate_by_tier": {t: s.hit_rate_by_tier()[t] for t in CACHE_TIERS},
            "adopted_blocks": s.adopted_blocks,
        }
        if mode == "timing":
            get_s = TIMING_COLUMNS.index("get_s")
            row["get_latency_s"] = percentiles([r[get_s] for r in run.records if r[2] == "get"])
        per.append(row)
    store = result.store
    return {
        "hit_rate": served / prompt if prompt else 0.0,
        "hit_rate_remote": remote / prompt if prompt else 0.0,
        "adopted_blocks": foreign,
        "store_blocks": len(store) if store is not None else None,
        "store_evicted_blocks": store.evicted if store is not None else None,
        "per_instance": per,
    }
