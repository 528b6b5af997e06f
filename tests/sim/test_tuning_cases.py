"""The operator guide's two tuning cases (scenarios/tuning), replayed in the twin."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexkv_sim.doctor import Doctor
from flexkv_sim.sweep import load_scenario

TUNING = Path(__file__).resolve().parents[2] / "scenarios" / "tuning"


def pair(case: str) -> tuple[Doctor, Doctor]:
    before = Doctor(load_scenario(TUNING / f"{case}-before.yaml"))
    after_scenario = load_scenario(TUNING / f"{case}-after.yaml")
    assert after_scenario.workload == before.scenario.workload  # the same trace
    return before, Doctor(after_scenario, loaded=before.loaded)


@pytest.fixture(scope="module")
def capacity() -> tuple[Doctor, Doctor]:
    return pair("capacity")


@pytest.fixture(scope="module")
def transfer() -> tuple[Doctor, Doctor]:
    return pair("transfer")


def test_capacity_case_raises_the_hit_rate(capacity):
    before, after = capacity
    cb, ca = before.base.cache_config, after.base.cache_config
    assert (cb.num_cpu_blocks, cb.enable_ssd, cb.evict_ratio) == (10000, False, 0.1)
    assert (ca.num_cpu_blocks, ca.enable_ssd, ca.evict_ratio) == (100000, True, 0.05)
    hb, ha = before.hitrate(), after.hitrate()
    assert 0.2 <= hb["hit_rate"] <= 0.4  # the guide: about 30%
    assert ha["hit_rate"] - hb["hit_rate"] >= 0.2
    assert ha["hit_rate"] >= 0.6  # the guide: about 75%
    assert ha["hit_rate_by_tier"]["ssd"] > 0  # the SSD tier serves some of it
    # The working set lies between the two CPU sizes: the capacities matter.
    curve = before.curve()
    assert 10000 < curve.capacity_for(0.9) < 100000 < curve.distinct_blocks


def test_transfer_case_cuts_h2d_latency(transfer):
    before, after = transfer
    cb, ca = before.base.cache_config, after.base.cache_config
    assert (cb.use_ce_transfer_h2d, cb.transfer_sms_h2d, cb.tokens_per_block) == (False, 8, 16)
    assert (ca.use_ce_transfer_h2d, ca.transfer_sms_h2d, ca.tokens_per_block) == (True, 16, 32)
    assert before.profile_names[0] == "h100-sxm-pcie5"
    tb, ta = before.timing(), after.timing()
    h2d_b, h2d_a = tb["paths"]["h2d"]["op_mean_s"], ta["paths"]["h2d"]["op_mean_s"]
    assert h2d_a / h2d_b <= 0.8  # the guide: about 40% less
    assert h2d_a / h2d_b >= 0.4
    assert ta["get_s"]["p50"] < tb["get_s"]["p50"]
    # With the copy engine on, the SM count no longer matters.
    eight = after.timing({"cache_config.transfer_sms_h2d": 8, "cache_config.transfer_sms_d2h": 8})
    assert eight["paths"]["h2d"]["op_mean_s"] == pytest.approx(h2d_a, rel=1e-12)
