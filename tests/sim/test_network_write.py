"""The remote store's write curve: its own when set, the read curve otherwise."""

from __future__ import annotations

import pytest

from flexkv_engine.config import load_config
from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.hardware import HardwareProfile, ProfileError, load_profiles, merge_profile
from flexkv_sim.replay.timing import replay_timing
from flexkv_sim.workloads import generate, write_trace


def doc(**sections) -> dict:
    return {"schema_version": 1, **sections}


def test_writes_fall_back_to_the_read_curve() -> None:
    profile = merge_profile(HardwareProfile(), doc(network={"bandwidth": "1GB/s"}), "t")
    assert profile.network_write is None
    assert profile.network_write_curve == profile.network


def test_write_curve_starts_from_the_read_curve_and_overrides_its_keys() -> None:
    both = doc(network={"overhead": "100us", "bandwidth": "2GB/s"},
               network_write={"bandwidth": "0.5GB/s"})
    profile = merge_profile(HardwareProfile(), both, "t")
    write = profile.network_write_curve
    assert write.bandwidth == 0.5e9 and write.overhead_s == pytest.approx(100e-6)
    assert profile.network.bandwidth == 2e9


def test_bad_write_curve_names_its_key() -> None:
    with pytest.raises(ProfileError, match="network_write"):
        merge_profile(HardwareProfile(), doc(network_write={"bandwidth": -1}), "t")


def test_slower_writes_make_puts_longer(tmp_path) -> None:
    path = tmp_path / "chat.jsonl"
    write_trace(path, *generate("multiturn", requests=80, seed=2, rate=4.0))
    sets = ["cache_config.num_cpu_blocks=200", "cache_config.num_remote_blocks=5000",
            "serving_config.num_gpu_blocks=0"]
    inp = prepare_replay(path, config=load_config(None, overrides=sets, env={}))
    base = load_profiles(["h100-sxm-pcie5", "network-25gbe"])
    slow = merge_profile(base, doc(network_write={"bandwidth": "0.1GB/s"}), "slow")
    put_s = [sum(r[15] for r in replay_timing(inp, p).records) for p in (base, slow)]
    assert put_s[1] > 5 * put_s[0] > 0
