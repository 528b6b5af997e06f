"""Pieces shared by the ``flexkv-sim`` and ``flexkv-run`` command lines (torch-free).

Bad input (config, trace, options) is reported as one line naming the file and line or
the key at fault, with exit status 2 and no traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .config import ConfigError
from .trace import IMPORTERS, TraceError

F = TypeVar("F", bound=Callable[..., Any])

USAGE_ERRORS = (ConfigError, TraceError, FileNotFoundError, IsADirectoryError, PermissionError)


def exit_on_bad_input(func: F) -> F:
    """Turn the errors a user can fix into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USAGE_ERRORS as exc:
            prog = Path(sys.argv[0]).name or "flexkv"
            click.echo(f"{prog}: error: {_describe(exc)}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def trace_options(func: F) -> F:
    """``--format``, ``--block-size``, ``--config`` and repeated ``--set``."""
    options = [
        click.option(
            "--format",
            "trace_format",
            type=click.Choice(sorted(IMPORTERS)),
            default=None,
            help="Trace format (default: detected from the first line).",
        ),
        click.option(
            "--block-size",
            type=click.IntRange(min=1),
            default=None,
            help="Tokens per block of an imported trace whose format does not say (Mooncake: 512).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="FlexKV config file (JSON with // comments, or YAML).",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY.PATH=VALUE",
            help="Override one config key, e.g. --set cache_config.num_cpu_blocks=5859 "
            "(repeatable; applied over --config).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


TIER_NAMES = {"cpu": "CPU", "ssd": "SSD", "remote": "remote"}


def hit_rate_scope(summary: dict[str, Any]) -> str:
    """What ``hit_rate`` counts, and the GPU prefix hits it leaves out.

    ``CPU+SSD tiers; GPU prefix hits 0.1200 not counted, 0.6500 with them``, or ``CPU
    tier; no GPU prefix cache``. The report says the same in percent.
    """
    tiers = [t for t in TIER_NAMES if t in (summary.get("tiers") or {})] or list(TIER_NAMES)
    scope = "+".join(TIER_NAMES[t] for t in tiers) + (" tier" if len(tiers) == 1 else " tiers")
    gpu = (summary.get("hit_rate_by_tier") or {}).get("gpu")
    gpu_blocks = ((summary.get("config") or {}).get("serving_config") or {}).get("num_gpu_blocks")
    if not gpu and gpu_blocks == 0:
        return f"{scope}; no GPU prefix cache"
    if gpu is None:
        return f"{scope}; GPU prefix hits not recorded"
    return (
        f"{scope}; GPU prefix hits {gpu:.4f} not counted, {summary['hit_rate'] + gpu:.4f} with them"
    )


def print_summary(
    summary: dict,
    out: str | None = None,
    report_path: Any = None,
    rows: tuple[tuple[str, str], ...] = (),
) -> None:
    """The terminal summary of a replay, the same for ``flexkv-sim`` and ``flexkv-run``.

    The headline hit rate says what it counts; ``why`` lines (the bound, the capacity it
    needs, the doctor's findings) follow the figures, then ``rows``, a tool's own lines;
    the last line names the report when there is one.
    """
    by_tier = summary["hit_rate_by_tier"]
    click.echo(f"requests        {summary['requests']}")
    click.echo(f"prompt tokens   {summary['prompt_tokens']}")
    click.echo(f"hit rate        {summary['hit_rate']:.4f}  ({hit_rate_scope(summary)})")
    tiers = "  ".join(f"{t} {r:.4f}" for t, r in by_tier.items())
    click.echo(f"by tier         {tiers}")
    latency = summary.get("latency")
    if latency:
        for name, label in (("get_s", "GET latency"), ("ttft_s", "TTFT")):
            p = latency[name]
            if p["p50"] is not None:
                click.echo(
                    f"{label:<16}p50 {p['p50'] * 1e3:.3f} ms  p90 {p['p90'] * 1e3:.3f} ms  "
                    f"p99 {p['p99'] * 1e3:.3f} ms"
                )
    click.echo(f"load / replay   {summary['load_s']:.3f} s / {summary['wall_s']:.3f} s")
    for i, line in enumerate(summary.get("why") or ()):
        click.echo(f"{'why' if i == 0 else '':<16}{line}")
    for label, value in rows:
        click.echo(f"{label:<16}{value}")
    if out is not None:
        click.echo(f"results in      {out}")
    if report_path is not None:
        click.echo(f"report in       {report_path}")
