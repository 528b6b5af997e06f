"""``flexkv-sim trace``: make synthetic traces, summarise traces, convert formats.

Thin commands: parse, call one library function (``flexkv_sim.workloads`` or the trace
package), print one line or a table. Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, TypeVar

import click

from flexkv_engine.cli_common import echo_json, exit_on_bad_input
from flexkv_engine.replay_input import no_requests_message
from flexkv_engine.trace import (
    IMPORTERS,
    RequestRecord,
    TraceError,
    convert,
    read_trace,
    write_mooncake,
)

from .progress import progress_bar
from .workloads import (
    ARRIVALS,
    DEFAULT_BURSTINESS,
    KEY_MODES,
    WORKLOADS,
    describe,
    generate,
    parse_params,
    trace_file_stats,
    write_trace,
)

#: ``trace generate --requests`` at most (about 20 GB of trace at chat sizes).
MAX_GENERATED_REQUESTS = 10_000_000

F = TypeVar("F", bound=Callable[..., Any])


def _workload_help() -> str:
    lines = ["Workload parameters (--param NAME=VALUE) and their defaults:", ""]
    for name in sorted(WORKLOADS):
        lines += ["\b", f"{name}:"]
        lines += [f"  {p:<20} {d!s:<10} {h}" for p, d, h in describe(name)]
        lines.append("")
    return "\n".join(lines)


def _reading_options(func: F) -> F:
    """``--format`` and ``--block-size`` (as in the replay's trace options)."""
    func = click.option(
        "--block-size",
        type=click.IntRange(min=1),
        default=None,
        help="Tokens per block of an imported trace whose format does not say (Mooncake: 512).",
    )(func)
    return click.option(
        "--format",
        "trace_format",
        type=click.Choice(sorted(IMPORTERS)),
        default=None,
        help="Trace format (default: detected from the first line).",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def trace() -> None:
    """Make synthetic traces, summarise traces, convert between formats."""


@trace.command(epilog=_workload_help())
@click.option(
    "--workload",
    type=click.Choice(sorted(WORKLOADS)),
    required=True,
    help="multiturn: chat sessions; agent: tool-using loops with long contexts; "
    "rag: shared documents retrieved into prompts.",
)
@click.option(
    "--requests",
    "num_requests",
    type=click.IntRange(min=1, max=MAX_GENERATED_REQUESTS),
    required=True,
    help=f"Number of requests (all GETs), at most {MAX_GENERATED_REQUESTS:,}.",
)
@click.option("--seed", type=int, required=True, help="Same seed, same file, byte for byte.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=4.0,
    show_default=True,
    help="Requests per second, overall.",
)
@click.option(
    "--arrival",
    type=click.Choice(ARRIVALS),
    default="poisson",
    show_default=True,
    help="poisson: exponential gaps; bursty: gamma gaps with CV --burstiness.",
)
@click.option(
    "--burstiness",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Coefficient of variation of the gaps for --arrival bursty "
    f"[default: {DEFAULT_BURSTINESS}].",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Tokens per block of the keys (coarser sizes can be derived later).",
)
@click.option("--namespace", default=None, help="Namespace of every request (tenant, LoRA).")
@click.option(
    "--key-mode",
    type=click.Choice(KEY_MODES),
    default="fast",
    show_default=True,
    help="fast: hash segment pieces; tokens: hash real token ids (slower).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a workload parameter (repeatable); listed below.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Trace to write (gzip-compressed when it ends with .gz).",
)
@exit_on_bad_input
def generate_cmd(
    workload: str,
    num_requests: int,
    seed: int,
    rate: float,
    arrival: str,
    burstiness: float | None,
    block_size: int,
    namespace: str | None,
    key_mode: str,
    params: tuple[str, ...],
    output: str,
) -> None:
    """Write a synthetic trace in our schema (every request a GET).

    Requests arrive at --rate per second. At each arrival the session (chat, agent task)
    that has waited out its think time the longest sends its next request; when none is
    ready a new session starts. Prompts share prefixes the way the workload says (system
    prompts, conversation history, tool definitions, documents), keyed with chained
    block keys.

    \b
    Example:
      flexkv-sim trace generate --workload multiturn --requests 300 --seed 1 \\
          --rate 4 -o chat.jsonl
      flexkv-sim trace stats chat.jsonl
    """
    header, records = generate(
        workload,
        requests=num_requests,
        seed=seed,
        rate=rate,
        arrival=arrival,
        burstiness=burstiness,
        tokens_per_block=block_size,
        namespace=namespace,
        key_mode=key_mode,
        **parse_params(workload, params),
    )
    bar = progress_bar(num_requests, "generate")
    with _terminate_as_interrupt():
        written = write_trace(output, header, _counted(records, bar))
    bar.close()
    click.echo(
        f"wrote {written} {workload} requests (seed {seed}, {rate:g}/s {arrival}, "
        f"{block_size}-token blocks) to {output}"
    )


trace.add_command(generate_cmd, name="generate")


@trace.command()
@click.argument("trace_path", metavar="TRACE", type=click.Path(exists=True, dir_okay=False))
@_reading_options
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@exit_on_bad_input
def stats(trace_path: str, trace_format: str | None, block_size: int | None, as_json: bool) -> None:
    """Summarise TRACE: sizes, time span and the hit rate of an infinite cache.

    The infinite-cache hit rate is token-weighted like the replay's hit_rate: in time
    order, a GET hits min(leading keys already seen x tokens per block, its tokens);
    then all its keys count as seen. No finite cache of the same block size does better.
    """
    result = asdict(trace_file_stats(trace_path, format=trace_format, block_size=block_size))
    if not result["requests"]:
        raise TraceError(no_requests_message(trace_path))
    if as_json:
        echo_json(result)
        return
    rows = [
        ("requests", f"{result['requests']}  ({result['gets']} get, {result['puts']} put)"),
        ("prompt tokens", result["prompt_tokens"]),
        ("output tokens", result["output_tokens"]),
        ("unique blocks", f"{result['unique_blocks']}  ({result['tokens_per_block']} tokens each)"),
        (
            "prompt length",
            f"mean {result['mean_prompt_tokens']:.1f}, max {result['max_prompt_tokens']}",
        ),
        ("time span", f"{result['time_span_s']:.3f} s"),
        ("infinite-cache hit rate", f"{result['infinite_cache_hit_rate']:.4f}"),
    ]
    for label, value in rows:
        click.echo(f"{label:<24}{value}")


@trace.command(name="convert")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "dst",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write (gzip-compressed when it ends with .gz).",
)
@_reading_options
@click.option(
    "--to",
    "target",
    type=click.Choice(["flexkv", "mooncake"]),
    default="flexkv",
    show_default=True,
    help="Output format.",
)
@exit_on_bad_input
def convert_cmd(
    src: str, dst: str, trace_format: str | None, block_size: int | None, target: str
) -> None:
    """Convert SRC (any known format) to our schema, or to Mooncake's.

    Mooncake output keeps the trace's block size (one hash id per block); read it back
    with --block-size when that is not Mooncake's 512. Request ids and namespaces do not
    survive in Mooncake's format.
    """
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise TraceError("the output would overwrite the input", dst)
    source = read_trace(src, format=trace_format, block_size=block_size)
    tokens_per_block = source.header.tokens_per_block
    with _bad_output():
        if target == "flexkv":
            written = convert(src, dst, format=source.format, block_size=block_size)
        else:
            with _replaced(dst) as partial:
                written = write_mooncake(_gets(source.requests()), partial, tokens_per_block)
    click.echo(f"wrote {written} records ({target}, {tokens_per_block}-token blocks) to {dst}")


def _counted(records: Iterator[RequestRecord], bar: Any) -> Iterator[RequestRecord]:
    for i, record in enumerate(records, 1):
        yield record
        if i % 1000 == 0:
            bar.update(1000)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``) unwinds like Ctrl-C, so a half-written file is removed."""
    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _gets(requests: Iterator[RequestRecord]) -> Iterator[RequestRecord]:
    for r in requests:
        if r.op != "get":
            raise TraceError(f"request {r.request_id} is a PUT; Mooncake traces hold GETs only")
        yield r


@contextmanager
def _replaced(dst: str) -> Iterator[str]:
    """A path beside ``dst`` to write to; renamed to ``dst`` only on success."""
    # The name keeps dst's suffix: writers pick gzip by a trailing ".gz".
    partial = os.path.join(os.path.dirname(dst), f".partial-{os.path.basename(dst)}")
    try:
        yield partial
        os.replace(partial, dst)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@contextmanager
def _bad_output() -> Iterator[None]:
    """Library ``ValueError`` s about the data (not bugs) as one-line usage errors."""
    try:
        yield
    except TraceError:
        raise
    except ValueError as exc:
        raise TraceError(str(exc)) from None
