"""Synthetic workloads: traces of chat sessions, agent loops and RAG queries.

``generate`` makes a trace in our schema (version 1) from a registered workload::

    header, records = generate("multiturn", requests=1000, seed=1, rate=4.0)
    write_trace("chat.jsonl.gz", header, records)

Every request is a GET with chained block keys at ``tokens_per_block``, its prompt
length and its ``output_tokens``. Prompts are built from content segments whose keys
are hashed once per new block (``keys.py``); arrivals follow a Poisson or a bursty
process at the requested rate (``generate.py``). The same arguments give the same
bytes. ``trace_stats`` summarises any trace, with its infinite-cache hit rate.

Adding a workload: a frozen dataclass deriving from ``Params`` whose fields are
``param(default, help, ...)``, with ``name``, ``id_prefix`` and ``sessions(ctx)``,
decorated with ``@register``, and imported below.
"""

# Importing a workload's module registers it.
from .agent import Agent
from .generate import GENERATOR_VERSION, SOURCE, generate, write_trace
from .keys import KEY_MODES, BlockChain, Segment
from .multiturn import MultiTurn
from .rag import Rag
from .registry import (
    WORKLOADS,
    Context,
    Params,
    Turn,
    Workload,
    describe,
    make_workload,
    param,
    parse_params,
    register,
)
from .sampling import ARRIVALS, DEFAULT_BURSTINESS, arrival_times
from .stats import TraceStats, trace_file_stats, trace_stats

__all__ = [
    "ARRIVALS",
    "DEFAULT_BURSTINESS",
    "GENERATOR_VERSION",
    "KEY_MODES",
    "SOURCE",
    "WORKLOADS",
    "Agent",
    "BlockChain",
    "Context",
    "MultiTurn",
    "Params",
    "Rag",
    "Segment",
    "TraceStats",
    "Turn",
    "Workload",
    "arrival_times",
    "describe",
    "generate",
    "make_workload",
    "param",
    "parse_params",
    "register",
    "trace_file_stats",
    "trace_stats",
    "write_trace",
]
