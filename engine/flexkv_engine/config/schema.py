"""What every configuration key accepts: its type, range, choices and aliases.

The dataclasses in :mod:`flexkv_engine.config.model` hold the defaults; this module holds
the rules, which :mod:`flexkv_engine.config.checks` applies both for the loader and for
the dataclasses' own checks, so a value is validated the same way whether it comes from a
file, the environment, ``--set`` or code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .catalog import MODEL_ALIASES, model_names

# Bytes per element of each KV-cache dtype, under torch's names.
DTYPE_SIZES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8_e4m3fn": 1}
DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
    "fp8": "float8_e4m3fn",
}
#: The remote stores, the one list of them: ``remote_backend`` -> the module of
#: ``flexkv_engine.storage.remote`` whose ``open_store(cache_config, stride)`` opens it.
#: Mooncake Store is left out: we cannot make sure that its sockets stay on 127.0.0.1.
REMOTE_BACKENDS = {"fs": "fs", "redis": "redis_store"}


def policy_names() -> list[str]:
    """Names of the eviction policies registered in the core, sorted."""
    from flexkv_engine.core.policies import POLICIES  # stdlib only; imported when needed

    return sorted(POLICIES)


def _dtype_names() -> list[str]:
    return sorted(DTYPE_SIZES)


def _remote_backends() -> list[str]:
    return list(REMOTE_BACKENDS)


@dataclass(frozen=True)
class Field:
    """Rules for one leaf key.

    ``kind`` is ``int``, ``float``, ``bool``, ``str`` or ``paths`` (one or more directory
    names, given as a list or as a ``;``-separated string). Bounds: ``lo`` (excluded when
    ``lo_open``) and ``hi``, inclusive; ``special`` values are accepted outside them.
    """

    kind: str
    optional: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    special: tuple[float, ...] = ()
    choices: Callable[[], Sequence[str]] | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """A group of keys. ``aliases`` maps other spellings of a key to its name;
    ``ignored`` are FlexKV keys that are accepted with a warning and have no effect."""

    fields: Mapping[str, Field | Section]
    aliases: Mapping[str, str] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()

    def valid_keys(self) -> list[str]:
        return sorted({*self.fields, *self.aliases})


#: Largest tier capacity in blocks: more than any machine or store holds (an absurd
#: value such as 1e15 is a typo, and would make the engine allocate it).
MAX_BLOCKS = 10**12
#: Largest block size in tokens, the trace format's bound.
MAX_TOKENS_PER_BLOCK = 2**20


def _capacity_blocks() -> Field:
    return Field("int", optional=True, lo=0)  # at most MAX_BLOCKS, checked on resolve


def _capacity_gb() -> Field:
    # GiB as a number, or a size with its unit ("64GiB", "500GB").
    return Field("gib", optional=True, lo=0)


# FlexKV settings that exist for its own deployment (GDS, server mode, layouts, index
# acceleration, trace rotation, P2P sharing, its CFS remote store) and mean nothing in
# this engine. Accepted at the top level and in cache_config.
FLEXKV_IGNORED_CACHE_KEYS = frozenset(
    {
        "enable_cpu", "enable_gds", "gds_cache_gb", "gds_cache_dir", "num_gds_blocks",
        "index_accel", "server_client_mode", "server_recv_port", "instance_num", "instance_id",
        "cpu_layout", "ssd_layout", "remote_layout", "gds_layout", "cpu_layout_type",
        "ssd_layout_type", "remote_layout_type", "gds_layout_type", "iouring_flags",
        "enable_flexkv", "num_log_interval_requests", "trace_max_file_size_mb",
        "trace_max_files", "trace_flush_interval_ms", "enable_layerwise_transfer",
        "h2d_cta_num", "d2h_cta_num", "enable_kv_sharing", "enable_p2p_cpu", "enable_p2p_ssd",
        "enable_3rd_remote", "num_local_blocks", "num_tmp_cpu_blocks", "distributed_node_id",
        "remote_cache_size_mode", "remote_file_size", "remote_file_num", "remote_file_prefix",
        "remote_cache_path", "remote_config_custom",
    }
)  # fmt: skip
# Parallelism is the serving engine's business; the KV layout here is per rank.
FLEXKV_IGNORED_MODEL_KEYS = frozenset({"tp_size", "dp_size", "pp_size"})

CACHE = Section(
    fields={
        "num_cpu_blocks": _capacity_blocks(),
        "num_ssd_blocks": _capacity_blocks(),
        "num_remote_blocks": _capacity_blocks(),
        "cpu_cache_gb": _capacity_gb(),
        "ssd_cache_gb": _capacity_gb(),
        "remote_cache_gb": _capacity_gb(),
        "tokens_per_block": Field("int", optional=True, lo=1),
        "enable_ssd": Field("bool", optional=True),
        "enable_remote": Field("bool", optional=True),
        "eviction_policy": Field("str", choices=policy_names),
        "evict_ratio": Field("float", lo=0, hi=1),
        "evict_start_threshold": Field("float", lo=0, hi=1, lo_open=True),
        "hit_reward_seconds": Field("float", lo=0),
        "slru_protected_threshold": Field("int", lo=1),
        "store_after_hits": Field("int", lo=0),
        "use_ce_transfer_h2d": Field("bool"),
        "use_ce_transfer_d2h": Field("bool"),
        "transfer_sms_h2d": Field("int", lo=1),
        "transfer_sms_d2h": Field("int", lo=1),
        "ssd_cache_dir": Field("paths"),
        "ssd_cache_iouring_entries": Field("int", lo=0),
        "max_file_size_gb": Field("float", lo=0, lo_open=True, special=(-1,)),
        "ssd_restore": Field("bool"),
        "enable_trace": Field("bool"),
        "trace_file_path": Field("str"),
        "remote_backend": Field("str", choices=_remote_backends),
        "remote_url": Field("str", optional=True),
        "remote_key_prefix": Field("str"),
        "remote_password": Field("str", optional=True),
        "remote_store_capacity_gb": _capacity_gb(),
    },
    aliases={"iouring_entries": "ssd_cache_iouring_entries"},
    ignored=FLEXKV_IGNORED_CACHE_KEYS,
)

MODEL = Section(
    fields={
        # A catalogued layout (catalog.py) fills the keys below unless they are given.
        "model": Field("str", optional=True, choices=model_names, aliases=MODEL_ALIASES),
        "num_layers": Field("int", lo=1),
        "num_kv_heads": Field("int", lo=1),
        "head_size": Field("int", lo=1),
        "dtype": Field("str", choices=_dtype_names, aliases=DTYPE_ALIASES),
        "use_mla": Field("bool"),
    },
    ignored=FLEXKV_IGNORED_MODEL_KEYS,
)

COMPUTE = Section(
    fields={
        "prefill_fixed_s": Field("float", lo=0),
        "prefill_per_token_s": Field("float", lo=0),
        "prefill_quadratic_s": Field("float", lo=0),
        "decode_step_s": Field("float", lo=0),
    }
)

SERVING = Section(
    fields={
        "num_gpu_blocks": Field("int", lo=0),
        "max_concurrency": Field("int", lo=0),
        "compute": COMPUTE,
        "hardware_profile": Field("str", optional=True),
    }
)

# The nested form. FlexKV's flat form puts cache keys (and their aliases) at the top.
ROOT = Section(
    fields={"cache_config": CACHE, "model_config": MODEL, "serving_config": SERVING},
    ignored=FLEXKV_IGNORED_CACHE_KEYS,
)
FLAT_KEYS = frozenset({*CACHE.fields, *CACHE.aliases})

ENV_PREFIX = "FLEXKV_"
# Environment variable -> cache_config key: FLEXKV_<KEY> for every flat key, plus
# FlexKV's own spelling of the io_uring queue depth.
ENV_VARS = {
    **{ENV_PREFIX + key.upper(): CACHE.aliases.get(key, key) for key in sorted(FLAT_KEYS)},
    "FLEXKV_IORING_ENTRIES": "ssd_cache_iouring_entries",
}

# A tier's capacity is given either in blocks or in GiB. A layer of higher precedence
# that sets either one replaces both from the layers below it.
CAPACITY_PAIRS = (
    ("num_cpu_blocks", "cpu_cache_gb"),
    ("num_ssd_blocks", "ssd_cache_gb"),
    ("num_remote_blocks", "remote_cache_gb"),
)
