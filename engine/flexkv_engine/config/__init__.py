"""Configuration of the engine and the twin: FlexKV's keys, as frozen dataclasses.

Sources, highest precedence first: ``--set key.path=value`` overrides, a JSON or YAML
file (the nested ``cache_config`` / ``model_config`` / ``serving_config`` form or
FlexKV's flat keys), ``FLEXKV_<KEY>`` environment variables, defaults. A loaded config
may leave the block size and tier capacities open; :meth:`Config.resolve` fixes them
once the trace's block size is known::

    config = load_config("flexkv.json", overrides=["cache_config.evict_ratio=0.05"])
    config = config.resolve(trace_tokens_per_block=16)

This package imports only the standard library (PyYAML when YAML is read).
"""

from .errors import ConfigError, FlexKVConfigWarning
from .loader import config_from_dict, load_config, parse_overrides, read_config_file
from .model import GIB, CacheConfig, ComputeModel, Config, ModelConfig, ServingConfig
from .output import config_hash, config_to_dict
from .schema import DTYPE_SIZES, REMOTE_BACKENDS, policy_names

__all__ = [
    "DTYPE_SIZES",
    "GIB",
    "REMOTE_BACKENDS",
    "CacheConfig",
    "ComputeModel",
    "Config",
    "ConfigError",
    "FlexKVConfigWarning",
    "ModelConfig",
    "ServingConfig",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "policy_names",
    "read_config_file",
]
