"""GPU <-> CPU transfer benchmark: the CUDA mover's paths against plain contiguous copies.

The layout is Llama-3-8B's (32 layers, 8 KV heads, head size 128, bf16, 16 tokens per
block: 32 KiB per layer and K/V, 2 MiB per block). ``blocks`` random GPU blocks go to
``blocks`` random host slots (D2H) and back (H2D), one job per direction, through
:class:`~flexkv_engine.transfer.cuda_copy.CudaCopyMover`:

- the SM gather/scatter kernel at several grid sizes (CTAs = SMs' worth of blocks);
- the copy-engine path (GPU gather into a block-first staging buffer, then whole-block
  copies, batched; and one cudaMemcpyAsync per run of slots, for comparison);
- both directions at once (one job each way, disjoint blocks).

The reference, timed in the same run on the same buffers, is one contiguous
cudaMemcpyAsync of the same bytes each way, and two such copies at once (one each way)
for the duplex figures; a reference round runs just before every measured round, and
each ratio is the median of the per-round ratios (the link's speed drifts by a few per
cent between minutes). Path times are GPU times between the job's CUDA events; duplex
times are host wall time from the two submits to both completions. Every figure is the
median of ``repeat`` rounds (fresh random ids each round) after one warm-up round.
GB/s = 1e9 bytes per second.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..layout import KVLayout
from ..storage.host_pool import GpuKVCache, HostPool

LLAMA3_8B = KVLayout(
    num_layers=32,
    num_kv_heads=8,
    head_size=128,
    tokens_per_block=16,
    dtype="bfloat16",
    dtype_size=2,
)
DEFAULT_SMS = (4, 8, 16, 32)
# Paths (H2D, D2H) timed with both directions at once.
DUPLEX_PAIRS = (
    ("sm", "sm"),
    ("ce", "ce"),
    ("ce_per_copy", "ce_per_copy"),
    ("ce", "sm"),
    ("sm", "ce"),
)


class GpuBenchError(RuntimeError):
    """The bench cannot run here (no CUDA GPU, native module without CUDA)."""


class _Runner:
    """Buffers, the mover and the timed helpers of one bench run."""

    def __init__(
        self,
        layout: KVLayout,
        blocks: int,
        seed: int,
        mover_args: dict[str, Any],
        repeat: int,
        say: Callable[[str], None],
    ) -> None:
        import torch

        from ..transfer.cuda_copy import CudaCopyMover

        self.rng = random.Random(seed)
        self.blocks, self.repeat = blocks, repeat
        self.num = 2 * blocks  # GPU blocks and host slots: room for disjoint sets each way
        gib = self.num * layout.block_bytes / 2**30
        say(f"allocating {gib:.1f} GiB on the GPU and {gib:.1f} GiB of pinned host memory")
        self.gpu = GpuKVCache(layout, self.num, "cuda")
        self.host = HostPool(layout, self.num, pin=True)
        self.device = self.gpu.kv.device.index or 0
        raw = self.gpu.kv.view(torch.uint8).view(-1)
        raw.copy_(torch.randint(0, 256, raw.shape, dtype=torch.uint8, device=raw.device))
        self.host.buffer.copy_(raw[: self.host.buffer.numel()])  # never time zeros
        torch.cuda.synchronize()
        self.mover = CudaCopyMover(self.host, self.gpu, **mover_args)
        self.nbytes = blocks * layout.block_bytes
        self._job_ids = itertools.count(1)
        self.refs: dict[str, list[float]] = {}  # every reference round, by kind

    def run_jobs(self, specs: list[tuple[bool, int, int]]) -> tuple[float, list[float]]:
        """Submit (h2d, mode, sms) jobs on disjoint random blocks; wall s, GPU s each."""
        import torch

        n = self.blocks
        gpu_ids = self.rng.sample(range(self.num), n * len(specs))
        host_ids = self.rng.sample(range(self.num), n * len(specs))
        torch.cuda.synchronize()
        wanted: dict[int, int] = {}
        began = time.perf_counter()
        for k, (h2d, mode, grid) in enumerate(specs):
            job = next(self._job_ids)
            wanted[job] = k
            part = slice(k * n, (k + 1) * n)
            self.mover.submit_blocks(job, h2d, gpu_ids[part], host_ids[part], mode=mode, sms=grid)
        times = [0.0] * len(specs)
        while wanted:
            got = self.mover.poll(timeout=60)
            if not got:
                raise GpuBenchError("no transfer finished within 60 s")
            for done in got:
                if not done.ok:
                    raise GpuBenchError(f"transfer failed: {done.error}")
                times[wanted.pop(done.job_id)] = done.transfer_s
        return time.perf_counter() - began, times

    def reference(self, kind: str) -> float:
        """GB/s of one round of plain contiguous copies: h2d, d2h, or one each way at once."""
        from .. import _native

        g, h, n = self.gpu.kv.data_ptr(), self.host.base_ptr, self.nbytes
        copies = {"h2d": [(g, h)], "d2h": [(h, g)], "duplex": [(g, h), (h + n, g + n)]}[kind]
        (secs,) = _native.time_contiguous_copies(
            self.device, [d for d, _ in copies], [s for _, s in copies], [n] * len(copies), 1
        )
        self.refs.setdefault(kind, []).append(len(copies) * n / secs / 1e9)
        return self.refs[kind][-1]

    def measure(self, kind: str, specs: list[tuple[bool, int, int]]) -> dict[str, float]:
        """Median GB/s of the jobs, and median ratio to the reference copy of the same kind
        timed just before each round. One job: GPU time between its events; several (both
        directions): host wall time from the submits to the last completion."""
        self.run_jobs(specs)  # warm-up
        rates, ratios = [], []
        for _ in range(self.repeat):
            ref = self.reference(kind)
            wall, gpu_s = self.run_jobs(specs)
            rate = len(specs) * self.nbytes / (gpu_s[0] if len(specs) == 1 else wall) / 1e9
            rates.append(rate)
            ratios.append(rate / ref)
        return {"gbps": statistics.median(rates), "ratio": statistics.median(ratios)}

    def both_ways(self, mode: int, grid: int = 0) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, h2d in (("h2d", True), ("d2h", False)):
            m = self.measure(name, [(h2d, mode, grid)])
            row[f"{name}_gbps"], row[f"{name}_ratio"] = m["gbps"], m["ratio"]
        return row


def run_gpu_bench(
    *,
    blocks: int = 512,
    sms: Sequence[int] = DEFAULT_SMS,
    duplex_sms: int = 16,
    repeat: int = 5,
    seed: int = 0,
    threads: int = 512,
    chunks_per_iter: int = 2,
    l2_prefetch: int = 0,
    staging_blocks: int = 32,
    layout: KVLayout = LLAMA3_8B,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bench and return its figures (see the module docstring)."""
    from ..transfer.cuda_copy import CE, CE_PER_COPY, SM, cuda_mover_unavailable

    say = progress or (lambda _msg: None)
    why = cuda_mover_unavailable("cuda")
    if why is not None:
        raise GpuBenchError(f"no CUDA mover here: {why}")
    import torch

    from .. import _native

    mover_args = {
        "threads": threads,
        "chunks_per_iter": chunks_per_iter,
        "l2_prefetch": l2_prefetch,
        "staging_blocks": staging_blocks,
        "sms_h2d": duplex_sms,
        "sms_d2h": duplex_sms,
    }
    run = _Runner(layout, blocks, seed, mover_args, repeat, say)
    modes = {"sm": SM, "ce": CE, "ce_per_copy": CE_PER_COPY}
    try:
        sm_rows = []
        for grid in sms:
            say(f"SM kernel, {grid} CTAs")
            sm_rows.append({"sms": grid, **run.both_ways(SM, grid)})
        say("copy engines")
        ce = {"ce": run.both_ways(CE), "ce_per_copy": run.both_ways(CE_PER_COPY)}
        ce["ce"]["batch"] = run.mover.batch_copies
        say("both directions at once")
        duplex = []
        for up, down in DUPLEX_PAIRS:
            specs = [(True, modes[up], duplex_sms), (False, modes[down], duplex_sms)]
            duplex.append({"h2d": up, "d2h": down, **run.measure("duplex", specs)})
    finally:
        run.mover.close()
    return {
        "gpu": torch.cuda.get_device_name(run.device),
        "sm_count": torch.cuda.get_device_properties(run.device).multi_processor_count,
        "cuda_runtime": _native.build_info()["cuda_runtime"],
        "torch": torch.__version__,
        "layout": {
            "num_layers": layout.num_layers,
            "num_kv_heads": layout.num_kv_heads,
            "head_size": layout.head_size,
            "tokens_per_block": layout.tokens_per_block,
            "dtype": layout.dtype,
            "chunk_bytes": layout.chunk_bytes,
            "block_bytes": layout.block_bytes,
        },
        "blocks": blocks,
        "bytes_per_direction": run.nbytes,
        "repeat": repeat,
        "threads": threads,
        "chunks_per_iter": chunks_per_iter,
        "l2_prefetch": l2_prefetch,
        "staging_blocks": staging_blocks,
        "contiguous": {f"{k}_gbps": statistics.median(v) for k, v in run.refs.items()},
        "sm": sm_rows,
        **ce,
        "duplex_sms": duplex_sms,
        "duplex": duplex,
    }


def _sms(value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter("grid sizes must be >= 1")
    return out


@click.command("gpu")
@click.option(
    "--blocks",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Random blocks per direction (2 MiB each for Llama-3-8B).",
)
@click.option(
    "--sms",
    default="4,8,16,32",
    show_default=True,
    help="Grid sizes (CTAs, one SM's worth each) of the SM kernel.",
)
@click.option(
    "--duplex-sms",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Grid of the SM kernel, each way, when both directions run at once.",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Rounds; each figure is the median over them.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(32, 512),
    default=512,
    show_default=True,
    help="Threads per CTA of the SM kernel.",
)
@click.option(
    "--chunks-per-iter",
    type=click.Choice(["1", "2", "4"]),
    default="2",
    show_default=True,
    help="Chunks whose loads each thread keeps in flight.",
)
@click.option(
    "--l2-prefetch",
    type=click.Choice(["0", "128", "256", "bulk"]),
    default="0",
    show_default=True,
    help="SM kernel loads: L2 prefetch size hint (bytes), or bulk: the TMA prefetches "
    "whole source chunks into L2 ahead of the loads.",
)
@click.option(
    "--staging-blocks",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Blocks per half of the copy-engine staging buffer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON only.")
def gpu_command(
    blocks: int,
    sms: str,
    duplex_sms: int,
    repeat: int,
    seed: int,
    threads: int,
    chunks_per_iter: str,
    l2_prefetch: str,
    staging_blocks: int,
    as_json: bool,
) -> None:
    """GPU <-> CPU copies of a Llama-3-8B layout: SM kernel and copy engines against one
    contiguous cudaMemcpyAsync of the same bytes (GB/s = 1e9 B/s)."""
    import json

    try:
        r = run_gpu_bench(
            blocks=blocks,
            sms=_sms(sms),
            duplex_sms=duplex_sms,
            repeat=repeat,
            seed=seed,
            threads=threads,
            chunks_per_iter=int(chunks_per_iter),
            l2_prefetch=1 if l2_prefetch == "bulk" else int(l2_prefetch),
            staging_blocks=staging_blocks,
            progress=lambda msg: click.echo(msg, err=True),
        )
    except GpuBenchError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    ref = r["contiguous"]
    gib = r["bytes_per_direction"] / 2**30
    click.echo(
        f"{r['gpu']}: {r['blocks']} random blocks of {r['layout']['block_bytes']} B each way "
        f"({gib:.2f} GiB), median of {r['repeat']}"
    )
    click.echo(
        f"  contiguous copy   H2D {ref['h2d_gbps']:6.2f}  D2H {ref['d2h_gbps']:6.2f}  "
        f"both at once {ref['duplex_gbps']:6.2f} GB/s"
    )
    rows = [(f"SM kernel {row['sms']:3d} SMs", row) for row in r["sm"]]
    rows += [("copy engine     ", r["ce"]), ("CE, copy per run", r["ce_per_copy"])]
    for label, row in rows:
        click.echo(
            f"  {label}  H2D {row['h2d_gbps']:6.2f} ({row['h2d_ratio']:.3f})  "
            f"D2H {row['d2h_gbps']:6.2f} ({row['d2h_ratio']:.3f})"
        )
    for d in r["duplex"]:
        click.echo(
            f"  both at once  H2D {d['h2d']:>11} + D2H {d['d2h']:>11}  "
            f"{d['gbps']:6.2f} ({d['ratio']:.3f})"
        )
    click.echo(
        "  (ratio: to the contiguous copy of the same kind timed just before each round; "
        f"SM kernel {r['duplex_sms']} CTAs each way when both directions run)"
    )


__all__ = ["DUPLEX_PAIRS", "LLAMA3_8B", "GpuBenchError", "gpu_command", "run_gpu_bench"]
