"""``flexkv-run``: the engine on real hardware.

Commands are thin: parse options, call one library function, write files. Torch and the
data plane are imported only by the commands that move bytes.
"""

from __future__ import annotations

import importlib.util
import sys

import click

from . import __version__
from .cli_bench import bench
from .cli_common import echo_json, exit_on_bad_input
from .cli_replay import replay
from .config import config_to_dict, load_config
from .config.overview import inert_keys, tier_sizes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flexkv-run")
def main() -> None:
    """The FlexKV Twin engine: tiered KV cache on CPU memory, SSD and a remote store."""


@main.command("config")
@click.argument("config_path", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override one key (repeatable), e.g. --set cache_config.num_cpu_blocks=10000.",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    default=None,
    help="Resolve as if the trace had this many tokens per block (default: 16).",
)
@exit_on_bad_input
def show_config(
    config_path: str | None, overrides: tuple[str, ...], block_size: int | None
) -> None:
    """Validate CONFIG_PATH (file, FLEXKV_* environment, --set) and print it resolved.

    Resolution fixes tokens_per_block and turns cpu_cache_gb / ssd_cache_gb into block
    counts with the model's bytes per block. The resolved config goes to stdout as JSON;
    stderr gets each enabled tier's size (blocks, bytes per block, GiB = 2^30 bytes) and
    a warning for each key that is set and does nothing (an SSD key with the SSD tier
    off, transfer_sms_* with the copy engine, ...). Errors name the key and exit with
    status 2.
    """
    config = load_config(config_path, overrides=overrides).resolve(block_size)
    echo_json(config_to_dict(config))
    click.echo("tier sizes (GiB = 2^30 bytes):", err=True)
    for size in tier_sizes(config):
        click.echo(f"  {size.describe()}", err=True)
    for key in inert_keys(config):
        click.echo(f"warning: {key.describe()}", err=True)


@main.command()
def info() -> None:
    """What this build and machine offer: native module, io_uring, CUDA, torch."""
    report: dict[str, object] = {"version": __version__, "python": sys.version.split()[0]}
    try:
        from . import _native

        report["native"] = _native.build_info()
        report["cuda_devices"] = _native.cuda_device_count()
    except ImportError as exc:
        report["native"] = f"not built ({exc})"
    report["torch"] = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        report["torch"] = torch.__version__
        report["torch_cuda"] = torch.cuda.is_available()
    echo_json(report)


main.add_command(replay)
main.add_command(bench)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
