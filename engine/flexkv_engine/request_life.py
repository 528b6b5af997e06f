"""One request's life in the emulated serving engine, as both halves run it. Torch-free.

``flexkv-run replay`` (:mod:`flexkv_engine.hw_replay.serving`: a thread per request over
the real :class:`~flexkv_engine.kv_manager.KVManager`), the twin's timing replay
(``flexkv_sim.replay.timing``: SimPy callbacks) and its hit-rate replay
(``flexkv_sim.replay.hitrate``: every step done at once) take a request through the same
steps, in this order:

1. ``admit``: a slot of ``serving_config.max_concurrency`` (0: none needed);
2. ``acquire``: the serving engine's GPU prefix cache (:mod:`.gpu_cache`): the leading
   blocks it holds, locked while the request runs;
3. ``working``: working GPU blocks for the rest, first come first served
   (:mod:`.serving_pool`);
4. ``get``: FlexKV GET of what the tiers hold beyond the GPU's blocks (match, transfers);
5. ``prefill``: the tokens no tier served (the compute model); its end is the first token;
6. ``put``: FlexKV's write-through PUT of the request's blocks, and beside it
7. ``decode``: ``output_tokens`` steps;
8. ``release``: once PUT and decode are over, the prefix cache keeps the request's blocks
   and its working blocks go back.

Each writes one row of :data:`COLUMNS` per request (the hit-rate mode, which has no
time, the first :data:`HIT_COLUMNS`), with the tokens of each tier from
:func:`tier_tokens`: the one place where served blocks become served tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

from .core.keys import tokens_in
from .core.paths import CACHE_TIERS

STEPS = ("admit", "acquire", "working", "get", "prefill", "put", "decode", "release")

#: A request's row. ``t``: its arrival and ``end_t``: its end (PUT and decode over),
#: both on the replay's clock (seconds since the replay began, the first arrival at its
#: trace time / speed); ``*_tokens``: prompt tokens each tier served; ``in_flight``: the
#: GET stopped at blocks another request was still writing; ``queue_s``: waiting for a
#: slot and working blocks; ``get_s``: the FlexKV GET; ``ttft_s``: arrival to first token;
#: ``put_s``: first token to the PUT's end.
COLUMNS = (
    "request_id", "t", "op", "num_tokens", "num_blocks",
    "gpu_tokens", "cpu_tokens", "ssd_tokens", "remote_tokens", "in_flight",
    "queue_s", "get_s", "prefill_s", "ttft_s", "decode_s", "put_s", "end_t",
)  # fmt: skip
HIT_COLUMNS = COLUMNS[:10]


def tier_tokens(
    gpu_blocks: int, served: Mapping[str, tuple[int, int]], tokens_per_block: int,
    num_tokens: int,
) -> tuple[int, int, int, int]:
    """Tokens served by the GPU prefix cache (its ``gpu_blocks`` leading blocks) and by
    the CPU, SSD and remote tiers (``served``: each tier's block range ``[start, end)``,
    as a GET's graph reports it); the last block of a prompt may be partial."""
    out = [tokens_in(0, gpu_blocks, tokens_per_block, num_tokens)]
    for tier in CACHE_TIERS:
        start, end = served.get(tier, (0, 0))
        out.append(tokens_in(start, end, tokens_per_block, num_tokens))
    return out[0], out[1], out[2], out[3]
