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


#: The engine's data plane: the twin never needs it (DESIGN.md 1).
DATA_PLANE = (
    "flexkv_engine.storage", "flexkv_engine.transfer", "flexkv_engine.kv_manager",
    "flexkv_engine.movers", "flexkv_engine.hw_replay", "flexkv_engine._native", "torch",
)
DATA_PLANE_PROBE = (
    "import sys, importlib; importlib.import_module({module!r}); "
    "print(','.join(sorted(m for m in sys.modules if m in {plane!r} "
    "or m.startswith(tuple(p + '.' for p in {plane!r})))))"
)


@pytest.mark.parametrize(
    "module",
    ["flexkv_sim.cli", "flexkv_sim.replay.timing", "flexkv_sim.replay.shared",
     "flexkv_sim.calibrate.validate", "flexkv_sim.doctor", "flexkv_sim.sweep"],
)
def test_twin_loads_none_of_the_data_plane(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", DATA_PLANE_PROBE.format(module=module, plane=DATA_PLANE)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert out == ""
