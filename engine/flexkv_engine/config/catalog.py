"""KV-cache layouts of well-known models, by name: ``model_config: {model: qwen2.5-7b}``.

A named layout fills ``num_layers``, ``num_kv_heads``, ``head_size``, ``dtype`` and
``use_mla`` of ``model_config``; any of those keys given explicitly wins over the layout.
Every entry is read from the model's Hugging Face ``config.json``: ``num_hidden_layers``,
``num_key_value_heads``, and ``head_dim`` where the file has one, else ``hidden_size /
num_attention_heads``; the dtype is its ``torch_dtype``. A layout is one rank's KV cache
with no tensor parallelism (with TP over ``t`` GPUs each rank holds ``num_kv_heads / t``
heads; give ``num_kv_heads`` explicitly then).

Standard library only: :mod:`flexkv_engine.config.schema` imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import ModelConfig

LAYOUT_KEYS = ("num_layers", "num_kv_heads", "head_size", "dtype", "use_mla")
"""The ``model_config`` keys that a named layout fills."""


def _layout(num_layers: int, num_kv_heads: int, head_size: int) -> dict[str, Any]:
    return {
        "num_layers": num_layers,
        "num_kv_heads": num_kv_heads,
        "head_size": head_size,
        "dtype": "bfloat16",
        "use_mla": False,
    }


MODEL_LAYOUTS: dict[str, dict[str, Any]] = {
    # huggingface.co/meta-llama/Meta-Llama-3-8B config.json: num_hidden_layers 32,
    # num_key_value_heads 8, hidden_size 4096 / num_attention_heads 32 = 128, bfloat16.
    # 32 x 2 x 8 x 128 x 2 B = 131072 B (128 KiB) per token.
    "llama-3-8b": _layout(32, 8, 128),
    # huggingface.co/meta-llama/Llama-3.1-8B config.json: the same shape as Llama-3-8B
    # (32 layers, 8 KV heads, 4096 / 32 = 128, bfloat16); only RoPE scaling differs.
    "llama-3.1-8b": _layout(32, 8, 128),
    # huggingface.co/meta-llama/Meta-Llama-3-70B config.json: num_hidden_layers 80,
    # num_key_value_heads 8, hidden_size 8192 / num_attention_heads 64 = 128, bfloat16.
    # 80 x 2 x 8 x 128 x 2 B = 327680 B (320 KiB) per token.
    "llama-3-70b": _layout(80, 8, 128),
    # huggingface.co/meta-llama/Llama-3.1-70B config.json: the same shape as Llama-3-70B.
    "llama-3.1-70b": _layout(80, 8, 128),
    # huggingface.co/Qwen/Qwen2.5-7B config.json: num_hidden_layers 28,
    # num_key_value_heads 4, hidden_size 3584 / num_attention_heads 28 = 128, bfloat16.
    # 28 x 2 x 4 x 128 x 2 B = 57344 B (56 KiB) per token.
    "qwen2.5-7b": _layout(28, 4, 128),
    # huggingface.co/Qwen/Qwen3-8B config.json: num_hidden_layers 36,
    # num_key_value_heads 8, head_dim 128 (given; hidden_size 4096 / 32 heads agrees),
    # bfloat16. 36 x 2 x 8 x 128 x 2 B = 147456 B (144 KiB) per token.
    "qwen3-8b": _layout(36, 8, 128),
}

# Other spellings, in lower case (names are matched case-insensitively): the Hugging Face
# repository ids, including the instruct variants, which share their base model's shape.
MODEL_ALIASES: dict[str, str] = {
    "meta-llama/meta-llama-3-8b": "llama-3-8b",
    "meta-llama/meta-llama-3-8b-instruct": "llama-3-8b",
    "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/meta-llama-3-70b": "llama-3-70b",
    "meta-llama/meta-llama-3-70b-instruct": "llama-3-70b",
    "meta-llama/llama-3.1-70b": "llama-3.1-70b",
    "meta-llama/llama-3.1-70b-instruct": "llama-3.1-70b",
    "qwen/qwen2.5-7b": "qwen2.5-7b",
    "qwen/qwen2.5-7b-instruct": "qwen2.5-7b",
    "qwen/qwen3-8b": "qwen3-8b",
}


def model_names() -> list[str]:
    """The names of the catalogued layouts, sorted (aliases not included)."""
    return sorted(MODEL_LAYOUTS)


def layout(name: str) -> dict[str, Any]:
    """The ``model_config`` values of the named layout (a name or an alias, any case).

    Raises KeyError naming the valid names for an unknown one; the config loader checks
    names earlier and raises ConfigError instead.
    """
    key = name.strip().lower()
    key = MODEL_ALIASES.get(key, key)
    if key not in MODEL_LAYOUTS:
        raise KeyError(f"unknown model {name!r}; choose from: {', '.join(model_names())}")
    return dict(MODEL_LAYOUTS[key])


def model_config(name: str, **explicit: Any) -> ModelConfig:
    """A ``ModelConfig`` with the named layout, ``explicit`` keys winning over it."""
    from .model import ModelConfig  # model imports schema, which imports this module

    return ModelConfig(**{**layout(name), **explicit, "model": name})
