"""The shipped hardware profiles: each loads, sources every number, and the H100 host's
figures reproduce the measurements they were derived from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from flexkv_engine.config import CacheConfig
from flexkv_sim.hardware import DEFAULT_PROFILES, hardware_dir, load_profiles

KiB, MiB, GB = 2**10, 2**20, 1e9
SHIPPED = sorted(p.stem for p in hardware_dir().glob("*.yaml"))
README = Path(__file__).resolve().parents[2] / "scenarios" / "README.md"


def numbers(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Key paths of every number a profile document sets."""
    for key, value in data.items():
        if not prefix and key in ("schema_version", "name", "description", "sources"):
            continue
        if isinstance(value, Mapping):
            yield from numbers(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def rate(curve, num_bytes: int, copies: int = 1) -> float:
    return num_bytes / curve.time(num_bytes, copies)


def test_the_expected_profiles_ship():
    expected = {
        "h100-sxm-pcie5",
        "h200-pcie5",
        "ssd-gen4",
        "ssd-gen5",
        "network-25gbe",
        "network-100gbe",
        "ci-cpu",
    }
    assert expected <= set(SHIPPED)
    assert set(DEFAULT_PROFILES) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_sources_every_number(name):
    profile = load_profiles([name])
    assert profile.names == (name,)
    data = yaml.safe_load((hardware_dir() / f"{name}.yaml").read_text())
    assert data["name"] == name and data.get("description")
    keys = set(numbers(data))
    assert keys, "a profile sets at least one number"
    assert sorted(keys - set(profile.sources)) == [], "numbers without a source"
    assert sorted(set(profile.sources) - keys) == [], "sources for numbers not set"
    for key, text in profile.sources.items():
        assert len(text.split()) >= 3, f"{key}: say where the number came from"


@pytest.mark.parametrize("name", SHIPPED)
def test_readme_lists_every_shipped_profile(name):
    assert f"`{name}.yaml`" in README.read_text()


@pytest.fixture(scope="module")
def h100():
    return load_profiles(["h100-sxm-pcie5"])


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
def test_h100_contiguous_copy_matches_the_measurements(h100, direction):
    copy = getattr(h100, direction).copy
    assert 52 * GB <= rate(copy, 4 * MiB) <= 54 * GB
    assert 9 * GB <= rate(copy, 64 * KiB) <= 12 * GB
    assert 4.5e-6 <= copy.per_copy_s <= 5.5e-6  # about 64KiB/10.5GB/s - 64KiB/53GB/s


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
@pytest.mark.parametrize("size", [64 * KiB, 2 * MiB, 4 * MiB, 128 * MiB])
def test_h100_sm_kernel_with_16_sms_reaches_095_of_the_copy(h100, direction, size):
    link = getattr(h100, direction)
    sm16 = link.curve(use_ce=False, sms=16)
    assert sm16.bandwidth == link.sm.bandwidth  # 16 SMs' worth of blocks reach the limit
    assert rate(sm16, size) >= 0.95 * rate(link.copy, size)
    assert link.sm.bandwidth <= 0.96 * link.copy.bandwidth
    assert link.curve(use_ce=False, sms=8).bandwidth < 0.6 * link.sm.bandwidth


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
def test_h100_copy_engine_path(h100, direction):
    link = getattr(h100, direction)
    assert 0.90 <= link.ce.bandwidth / link.copy.bandwidth <= 0.95
    assert link.ce.per_copy_s == link.copy.per_copy_s  # one copy per block
    blocks, block = 64, 2 * MiB  # Llama-3-8B, 16-token blocks
    ce_rate = rate(link.ce, blocks * block, copies=blocks)
    assert ce_rate < rate(link.curve(use_ce=False, sms=16), blocks * block)
    assert ce_rate > rate(link.curve(use_ce=False, sms=8), blocks * block)


def test_h100_duplex_and_directions(h100):
    assert 80 * GB <= h100.duplex_bandwidth <= 84 * GB
    assert h100.h2d == h100.d2h
    cache = CacheConfig(transfer_sms_h2d=16, use_ce_transfer_d2h=True)
    assert h100.h2d_curve(cache) == h100.h2d.curve(False, 16)
    assert h100.d2h_curve(cache) == h100.d2h.ce


def test_h100_compute_model_is_plausible_for_llama_3_8b(h100):
    compute = h100.compute
    # Measured (bench/prefill_profile.py): at least the 4.5 ms weight-read floor (15 GB
    # at 3.35 TB/s); launch-bound steps of batch 1 took 8.6-10 ms of GPU time.
    assert 4.48e-3 < compute.decode_step_s < 12e-3
    assert 0.1 < compute.prefill_time(8192, 0) < 0.4  # ~25-40k prompt tokens/s
    hit = compute.prefill_time(512, 7680)
    assert hit < compute.prefill_time(8192, 0) / 5  # a prefix hit saves most of it
    assert 15e-6 < h100.match_s < 30e-6


def test_h200_has_the_h100_link_and_faster_decode(h100):
    h200 = load_profiles(["h200-pcie5"])
    assert (h200.h2d, h200.d2h) == (h100.h2d, h100.d2h)
    assert h200.duplex_bandwidth == h100.duplex_bandwidth
    assert h200.compute.prefill_per_token_s == h100.compute.prefill_per_token_s
    assert h200.compute.decode_step_s == pytest.approx(
        h100.compute.decode_step_s * 3.35 / 4.8, rel=0.01
    )


@pytest.mark.parametrize(
    ("name", "read", "write"),
    [("ssd-gen4", (6.5, 7.5), (5.0, 6.0)), ("ssd-gen5", (12.0, 14.0), (10.0, 12.0))],
)
def test_ssd_profiles(name, read, write):
    profile = load_profiles([name])
    assert read[0] * GB <= profile.ssd_read.bandwidth <= read[1] * GB
    assert write[0] * GB <= profile.ssd_write.bandwidth <= write[1] * GB
    for ssd in (profile.ssd_read, profile.ssd_write):
        at32 = ssd.curve(32)
        assert at32.bandwidth >= 0.9 * ssd.bandwidth
        assert rate(at32, 2 * MiB) >= 0.5 * ssd.bandwidth  # latency included
        assert ssd.curve(1).bandwidth < at32.bandwidth
    assert 50e-6 <= profile.ssd_read.overhead_s <= 100e-6
    assert profile.ssd_write.overhead_s < profile.ssd_read.overhead_s


@pytest.mark.parametrize(
    ("name", "line_rate"), [("network-25gbe", 25e9 / 8), ("network-100gbe", 100e9 / 8)]
)
def test_network_profiles_stay_under_line_rate(name, line_rate):
    network = load_profiles([name]).network
    assert 0.9 * line_rate < network.bandwidth < line_rate
    assert 100e-6 <= network.overhead_s <= 200e-6


def test_ci_profile_is_a_memcpy_machine():
    ci = load_profiles(["ci-cpu"])
    assert 1 * GB < ci.h2d.copy.bandwidth < 12 * GB
    assert ci.h2d.curve(use_ce=False, sms=1) == ci.h2d.curve(use_ce=False, sms=64)
    assert ci.compute.prefill_time(1000, 0) == 0


def test_default_set_and_merge_order():
    default = load_profiles()
    assert default.names == DEFAULT_PROFILES
    h100, gen4, gen5 = (load_profiles([n]) for n in ("h100-sxm-pcie5", "ssd-gen4", "ssd-gen5"))
    assert default.h2d == h100.h2d and default.ssd_read == gen4.ssd_read
    assert load_profiles(["h100-sxm-pcie5", "ssd-gen4", "ssd-gen5"]).ssd_read == gen5.ssd_read
    assert load_profiles(["ssd-gen5", "ssd-gen4"]).ssd_read == gen4.ssd_read
    # A later host profile replaces the host keys and keeps the SSD of an earlier file.
    mixed = load_profiles(["ssd-gen5", "h100-sxm-pcie5", "ci-cpu"])
    assert mixed.h2d == load_profiles(["ci-cpu"]).h2d
    assert mixed.ssd_read != gen5.ssd_read  # ci-cpu sets its own disk
    assert load_profiles(["ssd-gen5", "h100-sxm-pcie5"]).ssd_read == gen5.ssd_read
