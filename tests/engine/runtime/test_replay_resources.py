"""A replay that would not fit this machine is refused before it allocates (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from flexkv_engine.config import ConfigError, load_config
from flexkv_engine.hw_replay.resources import GIB, available_memory, check_resources
from flexkv_engine.trace import public_traces_dir


def _config(*sets: str):
    return load_config(None, overrides=list(sets), env={}).resolve()


def test_a_cpu_tier_larger_than_memory_names_the_key_and_the_sizes() -> None:
    config = _config("cache_config.num_cpu_blocks=8192")  # Llama-3-8B: 16 GiB
    with pytest.raises(ConfigError) as err:
        check_resources(config, "cpu", 100, 50, memory=8 * GIB)
    assert err.value.key_path == "cache_config.num_cpu_blocks"
    assert "16.0 GiB" in str(err.value) and "8.0 GiB of memory available" in str(err.value)
    check_resources(config, "cpu", 100, 50, memory=64 * GIB)  # fits: no error


def test_an_emulated_gpu_cache_larger_than_memory_names_the_model() -> None:
    config = _config("cache_config.num_cpu_blocks=16")
    with pytest.raises(ConfigError) as err:
        check_resources(config, "cpu", 4000, 1000, memory=4 * GIB)
    assert err.value.key_path == "model_config"
    check_resources(config, "cuda", 4000, 1000, memory=4 * GIB)  # on a GPU it is not host memory


def test_an_ssd_tier_larger_than_the_disk_is_refused(tmp_path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    blocks = free // (2 << 20) + 1000  # more 2 MiB blocks than the disk holds
    config = _config("cache_config.num_cpu_blocks=16", f"cache_config.num_ssd_blocks={blocks}",
                     f"cache_config.ssd_cache_dir={tmp_path}/ssd")
    with pytest.raises(ConfigError) as err:
        check_resources(config, "cpu", 16, 8, memory=64 * GIB)
    assert err.value.key_path == "cache_config.num_ssd_blocks"


def test_the_default_config_is_refused_quickly_on_a_small_machine(tmp_path) -> None:
    trace = public_traces_dir() / "conversation_trace.jsonl"
    if not trace.exists():
        pytest.skip(f"{trace} not found (set FLEXKV_TRACES_DIR)")
    if (available_memory() or 0) > 128 * GIB:
        pytest.skip("this machine has memory enough for the default config")
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", "from flexkv_engine.cli import main; main()", "replay",
         str(trace)], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "memory available" in proc.stderr
    assert time.monotonic() - began < 10
    assert not list(tmp_path.iterdir())  # nothing written
