"""``flexkv-run bench``: data-plane benchmarks on this machine (thin: parse, run, print)."""

from __future__ import annotations

import json

import click

from .units import parse_size


def _size(value: str, what: str) -> int:
    try:
        return parse_size(value, what)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def bench() -> None:
    """Benchmarks of the data plane on this machine."""


@bench.command("ssd")
@click.option("--io-size", default="2MiB", show_default=True, help="Bytes per I/O (and block).")
@click.option(
    "--queue-depth",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="I/Os in flight (ours and fio's --iodepth).",
)
@click.option(
    "--dir",
    "directory",
    default="/var/tmp/flexkv-bench",
    show_default=True,
    help="Where the bench file goes (a disk, not tmpfs); a subdirectory is made and removed.",
)
@click.option("--size", default="4GiB", show_default=True, help="Bytes written and read.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "io_uring", "threads"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rounds; each figure is the median over them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON only.")
def bench_ssd(
    io_size: str,
    queue_depth: int,
    directory: str,
    size: str,
    backend: str,
    repeat: int,
    as_json: bool,
) -> None:
    """Our SSD backend against fio (io_uring engine) on one file, op size and queue depth.

    Writes --size bytes in --io-size blocks through our backend, reads them back
    (O_DIRECT), then runs fio --rw=read and --rw=write on the same file. GB/s = 1e9 B/s.
    """
    from .probes.ssd import SsdBenchError, run_ssd_bench
    from .storage.ssd_files import SsdFilesError

    try:
        result = run_ssd_bench(
            directory,
            size=_size(size, "--size"),
            io_size=_size(io_size, "--io-size"),
            queue_depth=queue_depth,
            backend=backend,
            repeat=repeat,
            progress=lambda msg: click.echo(msg, err=True),
        )
    except (SsdBenchError, SsdFilesError) as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{result['backend']} on {result['device']} ({result['filesystem']}), "
        f"{result['size'] / 2**30:.2f} GiB in {result['io_size'] // 1024} KiB ops, "
        f"queue depth {result['queue_depth']}"
    )
    for op in ("read", "write"):
        line = f"  {op:5}: ours {result[f'{op}_gbps']:.3f} GB/s"
        fio = result[f"fio_{op}_gbps"]
        if fio is not None:
            line += f", fio {fio:.3f} GB/s, ratio {result[f'{op}_ratio_to_fio']:.3f}"
        click.echo(line)
    if result.get("note"):
        click.echo(f"  note: {result['note']}")


from .probes.gpu import gpu_command  # noqa: E402  (torch is imported only when it runs)
from .probes.remote import remote_command  # noqa: E402

bench.add_command(gpu_command)
bench.add_command(remote_command)
