"""``flexkv-run replay``'s options, and what they wire around :func:`.run.run_replay`.

The command passes its options in and gets a :class:`HardwareRun` out; here are the
progress bar, the run's trace file (``trace.jsonl`` in the run directory, and the
tracer's own file when ``enable_trace`` asks), the timeline drawn from that trace, and
the Prometheus metrics server for the length of the replay.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from ..replay_input import ReplayInput
from .run import HardwareRun, run_replay


@dataclass(frozen=True)
class RunOptions:
    """How to run a replay on hardware, beside its config (the command's options)."""

    device: str | None = None  # None: cuda when present, else cpu
    speed: float | None = None  # None: one request at a time ("max")
    prefill: str = "none"
    ssd_backend: str = "auto"
    progress: bool | None = None  # a bar on stderr; None: when stderr is a terminal
    out: Path | None = None  # the run directory: the run's trace.jsonl goes there
    timeline: Path | None = None  # a Chrome trace of every transfer
    metrics_port: int | None = None  # serve Prometheus metrics (0: a free port)


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def replay_on_hardware(
    inp: ReplayInput, options: RunOptions, *, notice: Callable[[str], None] = _stderr
) -> HardwareRun:
    """Replay ``inp`` as ``options`` say; ``notice`` gets the lines worth telling the
    operator (where the metrics are served, where the tracer's file went)."""
    run_dir = options.out
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    bar = _progress_bar(len(inp.requests), options.progress)
    with ExitStack() as stack:
        trace_path = run_dir / "trace.jsonl" if run_dir is not None else None
        # enable_trace: the tracer's file is written too (a copy of the run's trace when
        # there is a run directory), with every request record, so that it replays.
        cc = inp.config.cache_config
        also_trace = Path(cc.trace_file_path) if cc.enable_trace else None
        if trace_path is None and also_trace is not None:
            trace_path, also_trace = also_trace, None
        if options.timeline is not None and trace_path is None:
            trace_path = Path(stack.enter_context(TemporaryDirectory())) / "trace.jsonl"
        metrics = None
        if options.metrics_port is not None:
            from ..metrics import Metrics

            metrics = stack.enter_context(Metrics())
            port = metrics.serve(options.metrics_port)
            notice(f"metrics on http://127.0.0.1:{port}/metrics")
        try:
            run = run_replay(
                inp,
                device=options.device or default_device(),
                speed=options.speed,
                prefill=options.prefill,
                trace_path=trace_path,
                ssd_backend=options.ssd_backend,
                progress=bar,
                metrics=metrics,
            )
        finally:
            if bar is not None:
                bar.close()
        if also_trace is not None and trace_path is not None:
            also_trace.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trace_path, also_trace)
            notice(
                f"enable_trace: the trace is in {trace_path} and, as trace_file_path asks, "
                f"in {also_trace}"
            )
        if options.timeline is not None:
            from ..timeline import read_transfers, write_chrome_trace

            assert trace_path is not None
            transfers = read_transfers(trace_path)
            write_chrome_trace(transfers, options.timeline, process_name="flexkv-run")
    return run


def _progress_bar(total: int, enabled: bool | None) -> Any:
    if not (enabled or (enabled is None and sys.stderr.isatty())):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="req", file=sys.stderr, delay=1.0)
