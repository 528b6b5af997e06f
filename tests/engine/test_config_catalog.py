"""Named model layouts: ``model_config: {model: qwen2.5-7b}`` and its precedence rules."""

from __future__ import annotations

import json

import pytest

from flexkv_engine.config import ConfigError, ModelConfig, config_from_dict, load_config
from flexkv_engine.config.catalog import MODEL_ALIASES, MODEL_LAYOUTS, layout, model_config

# From each model's Hugging Face config.json: layers x (K and V) x KV heads x head dim x 2 B.
BYTES_PER_TOKEN = {
    "llama-3-8b": 32 * 2 * 8 * 128 * 2,  # 131072
    "llama-3.1-8b": 32 * 2 * 8 * 128 * 2,
    "llama-3-70b": 80 * 2 * 8 * 128 * 2,  # 327680
    "llama-3.1-70b": 80 * 2 * 8 * 128 * 2,
    "qwen2.5-7b": 28 * 2 * 4 * 128 * 2,  # 57344
    "qwen3-8b": 36 * 2 * 8 * 128 * 2,  # 147456
}


def load(tmp_path, data, **kwargs):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return load_config(path, env={}, **kwargs)


def test_every_layout_has_its_published_size():
    assert set(MODEL_LAYOUTS) == set(BYTES_PER_TOKEN)
    assert BYTES_PER_TOKEN["llama-3-8b"] == 131072
    for name, expected in BYTES_PER_TOKEN.items():
        config = config_from_dict({"model_config": {"model": name}})
        assert config.model_config.model == name
        assert config.model_config.bytes_per_token == expected, name


@pytest.mark.parametrize("name", sorted(MODEL_LAYOUTS))
def test_layouts_are_valid_model_configs(name):
    assert ModelConfig(**layout(name)).bytes_per_token == BYTES_PER_TOKEN[name]
    assert model_config(name) == ModelConfig(**layout(name), model=name)


def test_default_model_config_is_llama_3_8b():
    assert ModelConfig(**layout("llama-3-8b"), model=None) == ModelConfig()


def test_model_from_a_yaml_file_and_from_set(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model_config:\n  model: qwen2.5-7b\n")
    config = load_config(path, env={})
    assert (config.model_config.num_layers, config.model_config.num_kv_heads) == (28, 4)
    assert "model_config.model" in config.explicit
    assert "model_config.num_layers" not in config.explicit  # filled, not set
    overridden = load_config(path, env={}, overrides=["model_config.model=llama-3-70b"])
    assert overridden.model_config == model_config("llama-3-70b")
    assert overridden.model_config.bytes_per_token == 327680


def test_explicit_keys_win_over_the_named_layout(tmp_path):
    config = load(
        tmp_path, {"model_config": {"model": "llama-3-70b", "num_kv_heads": 2, "dtype": "fp8"}}
    )
    mc = config.model_config
    assert (mc.model, mc.num_layers, mc.num_kv_heads, mc.head_size) == ("llama-3-70b", 80, 2, 128)
    assert mc.dtype == "float8_e4m3fn"
    assert mc.bytes_per_token == 80 * 2 * 2 * 128 * 1
    # An override of one layout key keeps the file's model for the others.
    tp4 = load(
        tmp_path,
        {"model_config": {"model": "llama-3-70b"}},
        overrides=["model_config.num_kv_heads=2"],
    )
    assert (tp4.model_config.num_layers, tp4.model_config.num_kv_heads) == (80, 2)


def test_a_later_model_replaces_the_layout_keys_of_an_earlier_source(tmp_path):
    # FlexKV configs spell out the layout; naming a model on the command line replaces it.
    file_layout = {"model_config": {"num_layers": 32, "num_kv_heads": 8, "head_size": 128}}
    config = load(tmp_path, file_layout, overrides=["model_config.model=qwen2.5-7b"])
    assert config.model_config == model_config("qwen2.5-7b")


def test_names_are_case_insensitive_and_accept_hugging_face_ids():
    for spelling, name in [
        ("Qwen2.5-7B", "qwen2.5-7b"),
        ("Qwen/Qwen3-8B", "qwen3-8b"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "llama-3-70b"),
    ]:
        config = config_from_dict({"model_config": {"model": spelling}})
        assert config.model_config == model_config(name)
    assert all(
        alias == alias.lower() and target in MODEL_LAYOUTS
        for alias, target in MODEL_ALIASES.items()
    )


def test_unknown_model_lists_the_valid_names(tmp_path):
    names = ", ".join(sorted(MODEL_LAYOUTS))
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"model_config": {"model": "llama-4-8b"}})
    assert err.value.key_path == "model_config.model"
    assert f"unknown model 'llama-4-8b'; choose from: {names}" in str(err.value)
    with pytest.raises(ConfigError, match=r"--set: model_config\.model: unknown model 'gpt-5'"):
        load_config(env={}, overrides=["model_config.model=gpt-5"])
    with pytest.raises(ConfigError, match="unknown model"):
        ModelConfig(model="nope")
    with pytest.raises(KeyError, match=f"choose from: {names}"):
        layout("nope")


def test_null_model_keeps_the_given_layout(tmp_path):
    config = load(tmp_path, {"model_config": {"model": None, "num_layers": 40}})
    assert config.model_config.model is None and config.model_config.num_layers == 40
