"""``flexkv-sim calibrate`` and ``flexkv-sim validate``."""

from __future__ import annotations

from pathlib import Path

import click

from flexkv_engine.cli_common import echo_json, exit_on_bad_input


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the fitted hardware profile (YAML).",
)
@exit_on_bad_input
def calibrate(sources: tuple[str, ...], output: str) -> None:
    """Fit a hardware profile from SOURCES: `flexkv-run replay --out` directories or traces.

    Each path's curve (overhead + bytes / bandwidth, for SSD the queue-depth term) is
    fitted over the ops of every run given, by robust least squares on relative errors,
    with each op's time taken as it would be alone under processor sharing; its spread
    becomes the curve's jitter. The fit quality of each path is printed. Several runs
    (say, at different queue depths) identify more than one can.

    A path fitted from fewer than 20 ops, or whose curve has an R^2 below 0.5, is
    warned about on stderr, and the warning is kept in the profile (its sources entry,
    and a comment at the top of the file).
    """
    import yaml

    from .calibrate import calibrate as fit
    from .calibrate import load_run
    from .calibrate.fit import fit_warnings

    doc, fits = fit([load_run(source) for source in sources])
    warnings = [f"{f.path}: {text}" for f in fits for text in fit_warnings(f)]
    header = "".join(f"# warning: {line}\n" for line in warnings)
    Path(output).write_text(header + yaml.safe_dump(doc, sort_keys=False))
    click.echo(
        f"{'path':<13}{'ops':>7}{'used':>7}{'overhead':>13}{'bandwidth':>14}"
        f"{'per I/O':>11}{'h (qd)':>8}{'jitter':>8}{'R^2':>8}{'median err':>12}"
    )
    for f in fits:
        half = (
            "-"
            if f.half_bandwidth_queue_depth is None
            else (f"{f.half_bandwidth_queue_depth:.2f}" if f.queue_depth_identified else "n/a")
        )
        per_io = "-" if f.per_io_s is None else f"{f.per_io_s * 1e6:.1f} us"
        click.echo(
            f"{f.path:<13}{f.ops:>7}{f.used:>7}{f.overhead_s * 1e6:>10.1f} us"
            f"{f.bandwidth / 1e9:>9.3f} GB/s{per_io:>11}{half:>8}{f.jitter:>8.3f}"
            f"{f.r2:>8.3f}{f.median_rel_err:>11.1%}"
        )
    click.echo(f"match {doc['match'] * 1e6:.1f} us; profile written to {output}")
    for line in warnings:
        click.echo(f"warning: {line}", err=True)


@click.command()
@click.option(
    "--measured",
    "run_dir",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="A `flexkv-run replay --out` directory.",
)
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Hardware profile to predict with (e.g. from `flexkv-sim calibrate`).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write validation.json, requests_compared.csv and validation.html here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the report JSON.")
@exit_on_bad_input
def validate(run_dir: str, profile: str, out: str | None, as_json: bool) -> None:
    """Replay a measured run in the twin (its config and pacing) and report the errors."""
    from .calibrate import validate as run_validation

    report = run_validation(run_dir, profile, out=Path(out) if out else None)
    if as_json:
        echo_json(report)
        return
    hr = report["hit_rate"]["total"]
    click.echo(
        f"hit rate     measured {hr['measured']:.4f}  predicted {hr['predicted']:.4f}"
        f"  abs err {hr['abs_err']:.4f}  block agreement {report['block_agreement']:.1%}"
    )
    for column, stats in report["latency"].items():
        cells = "  ".join(
            f"p{q[1:]} {s['measured'] * 1e3:.3f}/{s['predicted'] * 1e3:.3f} ms ({s['rel_err']:.1%})"
            for q, s in stats.items()
            if s["rel_err"] is not None
        )
        click.echo(f"{column:<12} {cells}  (measured/predicted)")
    for path, o in report["ops_by_path"].items():
        click.echo(
            f"op time      {path:<12} {o['ops']:>6} ops  measured {o['measured_s']:.3f} s"
            f"  predicted {o['predicted_s']:.3f} s  median ratio {o['median_ratio']:.3f}"
        )
    if "html" in report:
        click.echo(f"page         {report['html']}")
