"""A trace and a config, prepared for replay (shared by ``flexkv-sim`` and ``flexkv-run``).

Reads the trace, resolves the config against the trace's block size, and re-blocks the
keys when the config asks for a coarser ``tokens_per_block`` (DESIGN.md 5: keys are
chained, so a coarser block's key is the key of its last finer block): the last two
steps are :func:`fit_to_config`, which callers holding an already loaded trace use
alone. Torch-free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .config import Config, ConfigError, load_config
from .core.keys import reblock, reblock_factor
from .trace import RequestRecord, TraceError, TraceHeader, load_requests


@dataclass(frozen=True)
class ReplayInput:
    """Everything a replay needs; ``requests`` are sorted by time and already re-blocked."""

    config: Config  # resolved
    header: TraceHeader
    requests: list[RequestRecord]
    trace_path: str
    trace_format: str
    recorded_tokens_per_block: int
    load_s: float  # reading, converting and re-blocking the trace


def no_requests_message(trace_path: str | os.PathLike[str]) -> str:
    return (
        f"{os.fspath(trace_path)}: no request records, nothing to replay (a trace needs "
        "`request` records; see traces/FORMAT.md)"
    )


def fit_to_config(
    config: Config,
    recorded_tokens_per_block: int,
    requests: list[RequestRecord],
    reblocked: dict[int, list[RequestRecord]] | None = None,
) -> tuple[Config, list[RequestRecord]]:
    """Resolve ``config`` against the trace's block size and re-block ``requests`` to it.

    A ``tokens_per_block`` that is not a multiple of the recorded one is a
    :class:`ConfigError` on ``cache_config.tokens_per_block``. ``reblocked`` maps a
    factor to the requests already re-blocked by it: it is read, and filled, so that
    several configs over one trace re-block it once per factor.
    """
    config = config.resolve(trace_tokens_per_block=recorded_tokens_per_block)
    wanted = config.cache_config.tokens_per_block
    assert wanted is not None
    try:
        factor = reblock_factor(recorded_tokens_per_block, wanted)
    except ValueError as exc:
        raise ConfigError(
            str(exc), key_path="cache_config.tokens_per_block", source=config.source
        ) from exc
    if factor == 1:
        return config, requests
    if reblocked is not None and factor in reblocked:
        return config, reblocked[factor]
    coarse = [replace(r, keys=reblock(r.keys, factor)) for r in requests]
    if reblocked is not None:
        reblocked[factor] = coarse
    return config, coarse


def prepare_replay(
    trace_path: str | os.PathLike[str],
    *,
    trace_format: str | None = None,
    block_size: int | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    config: Config | None = None,
) -> ReplayInput:
    """Load ``trace_path`` and the config (a file plus ``--set`` overrides, or ``config``)."""
    start = time.perf_counter()
    if config is None:
        config = load_config(config_path, overrides=overrides)
    header, requests = load_requests(trace_path, format=trace_format, block_size=block_size)
    if not requests:
        raise TraceError(no_requests_message(trace_path))
    recorded = header.tokens_per_block
    config, requests = fit_to_config(config, recorded, requests)
    return ReplayInput(
        config=config,
        header=header,
        requests=requests,
        trace_path=os.fspath(trace_path),
        trace_format=trace_format or header.source,
        recorded_tokens_per_block=recorded,
        load_s=time.perf_counter() - start,
    )
