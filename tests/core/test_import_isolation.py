"""The core and the twin import without torch, numpy or simpy (a fresh interpreter each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = (
    "import sys, importlib; importlib.import_module({module!r}); "
    "print(','.join(sorted(m for m in ('torch', 'numpy', 'simpy') if m in sys.modules)))"
)


def loaded_heavy_modules(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return [m for m in out.split(",") if m]


@pytest.mark.parametrize(
    "module",
    [
        "flexkv_engine.core",
        "flexkv_engine.core.planner",
        "flexkv_engine.core.index",
        "flexkv_engine.core.policies",
        "flexkv_engine.core.keys",
        "flexkv_engine.core.stats",
    ],
)
def test_core_loads_no_torch_numpy_or_simpy(module: str) -> None:
    assert loaded_heavy_modules(module) == []


@pytest.mark.parametrize(
    "module", ["flexkv_sim", "flexkv_sim.cli", "flexkv_engine.planning", "flexkv_engine.config"]
)
def test_twin_and_config_load_no_torch(module: str) -> None:
    assert "torch" not in loaded_heavy_modules(module)
