"""The hardware profile loader: curves, merging, and errors that name the file and key."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from flexkv_engine.config import CacheConfig, ConfigError
from flexkv_sim.hardware import (
    Curve,
    HardwareProfile,
    PcieDirection,
    ProfileError,
    SsdCurve,
    find_profile,
    load_profiles,
    merge_profile,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_curve_time_is_overhead_plus_copies_plus_bytes_over_bandwidth():
    curve = Curve(overhead_s=1e-6, bandwidth=1e9, per_copy_s=2e-6)
    assert curve.time(1000, copies=3) == pytest.approx(1e-6 + 3 * 2e-6 + 1e-6)


def test_sm_bandwidth_grows_with_the_grid_up_to_the_kernel_limit():
    direction = PcieDirection(sm=Curve(bandwidth=50e9), sm_bandwidth_per_sm=4e9, ce=Curve(1, 2, 3))
    assert direction.curve(use_ce=False, sms=8).bandwidth == 32e9
    assert direction.curve(use_ce=False, sms=32).bandwidth == 50e9
    assert direction.curve(use_ce=True, sms=8) == Curve(1, 2, 3)


def test_ssd_bandwidth_at_queue_depth():
    ssd = SsdCurve(overhead_s=1e-4, bandwidth=8e9, half_bandwidth_queue_depth=2)
    assert ssd.curve(2).bandwidth == 4e9
    assert ssd.curve(6).bandwidth == 6e9
    assert ssd.curve(0).bandwidth == ssd.curve(1).bandwidth  # pread threads: depth 1
    assert ssd.curve(6).overhead_s == 1e-4


def test_profile_picks_the_configured_copy_mode():
    profile = HardwareProfile(
        h2d=PcieDirection(sm=Curve(bandwidth=50e9), sm_bandwidth_per_sm=5e9, ce=Curve(bandwidth=7)),
        d2h=PcieDirection(sm=Curve(bandwidth=40e9), sm_bandwidth_per_sm=1e9, ce=Curve(bandwidth=9)),
    )
    cache = CacheConfig(use_ce_transfer_h2d=True, transfer_sms_d2h=4)
    assert profile.h2d_curve(cache).bandwidth == 7
    assert profile.d2h_curve(cache).bandwidth == 4e9


UNITS = """\
    schema_version: 1
    name: units
    pcie:
      h2d:
        sm: {overhead: 8us, bandwidth: 50GB/s}
        sm_bandwidth_per_sm: 3.2 GB/s
        ce: {overhead: 0.01ms, per_copy: 5e-6, bandwidth: 12GiB/s}
        copy: {per_copy: 5us, bandwidth: 53e9}
      duplex_bandwidth: 80GBps
    ssd:
      read: {overhead: 80us, bandwidth: 7GB/s, half_bandwidth_queue_depth: 1.5}
    network: {overhead: 150us, per_copy: 5us, bandwidth: 2.94GB/s}
    compute: {prefill_fixed: 4ms, prefill_per_token: 25us, prefill_quadratic: 0.9ns,
              decode_step: 4.5ms}
    match: 20us
    sources:
      match: a guess
"""


def test_numbers_take_units(tmp_path):
    profile = load_profiles([str(write(tmp_path, "units.yaml", UNITS))])
    assert profile.names == ("units",)
    assert profile.h2d.sm == Curve(overhead_s=8e-6, bandwidth=50e9)
    assert profile.h2d.sm_bandwidth_per_sm == pytest.approx(3.2e9)
    assert profile.h2d.ce == Curve(
        overhead_s=pytest.approx(1e-5), bandwidth=12 * 2**30, per_copy_s=pytest.approx(5e-6)
    )
    assert profile.h2d.copy.bandwidth == 53e9
    assert profile.duplex_bandwidth == 80e9
    assert profile.ssd_read == SsdCurve(pytest.approx(80e-6), 7e9, 1.5)
    assert profile.network.bandwidth == pytest.approx(2.94e9)
    assert profile.compute.prefill_quadratic_s == pytest.approx(0.9e-9)
    assert profile.compute.decode_step_s == pytest.approx(4.5e-3)
    assert profile.match_s == pytest.approx(20e-6)
    assert profile.sources == {"match": "a guess"}
    assert profile.d2h == PcieDirection()  # not set: the default (an ideal link)


def test_later_files_override_only_the_keys_they_set(tmp_path):
    base = write(tmp_path, "base.yaml", UNITS)
    tweak = write(
        tmp_path,
        "tweak.yaml",
        """\
        schema_version: 1
        name: tweak
        pcie:
          h2d:
            sm: {bandwidth: 40GB/s}
        network: {bandwidth: 1GB/s}
        match: 30us
        sources:
          match: calibrated
          network.bandwidth: calibrated
    """,
    )
    profile = load_profiles([str(base), str(tweak)])
    assert profile.names == ("units", "tweak")
    assert profile.h2d.sm == Curve(overhead_s=8e-6, bandwidth=40e9)  # overhead kept
    assert profile.h2d.ce.bandwidth == 12 * 2**30
    assert profile.network == Curve(
        overhead_s=pytest.approx(150e-6), bandwidth=1e9, per_copy_s=pytest.approx(5e-6)
    )
    assert profile.match_s == pytest.approx(30e-6)
    assert profile.ssd_read.bandwidth == 7e9
    assert profile.sources == {"match": "calibrated", "network.bandwidth": "calibrated"}
    reverse = load_profiles([str(tweak), str(base)])
    assert reverse.h2d.sm.bandwidth == 50e9 and reverse.network.bandwidth == pytest.approx(2.94e9)
    assert reverse.sources["match"] == "a guess"


def test_merge_profile_applies_a_document_over_a_profile():
    merged = merge_profile(HardwareProfile(), {"schema_version": 1, "match": "1ms"}, "inline")
    assert merged.match_s == pytest.approx(1e-3) and merged.names == ("inline",)


def test_names_resolve_in_the_hardware_dir(tmp_path, monkeypatch):
    write(tmp_path, "tiny.yaml", "schema_version: 1\nmatch: 5us\n")
    monkeypatch.setenv("FLEXKV_HARDWARE_DIR", str(tmp_path))
    assert find_profile("tiny") == tmp_path / "tiny.yaml"
    assert load_profiles("tiny").match_s == pytest.approx(5e-6)  # one name, not its letters
    with pytest.raises(ProfileError, match=r"unknown hardware profile 'tinyy'; choose from: tiny"):
        find_profile("tinyy")
    with pytest.raises(ProfileError, match="no such file"):
        find_profile(str(tmp_path / "missing.yaml"))


BAD = [
    ("schema_version: 2\n", r"schema_version: must be 1, got 2"),
    ("name: x\n", r"schema_version: must be 1, got None"),
    ("schema_version: true\n", r"schema_version: must be 1, got True"),
    ("schema_version: 1\ngpu: {}\n", r"gpu: unknown section; choose from: schema_version"),
    ("schema_version: 1\npcie: {h2x: {}}\n", r"pcie\.h2x: unknown key; choose from: h2d, d2h"),
    (
        "schema_version: 1\npcie: {h2d: {sm: {latency: 1us}}}\n",
        r"pcie\.h2d\.sm\.latency: unknown key; choose from: overhead, per_copy, bandwidth",
    ),
    ("schema_version: 1\npcie: {h2d: {sms: 3}}\n", r"pcie\.h2d\.sms: unknown key"),
    (
        "schema_version: 1\npcie: {h2d: {sm: {bandwidth: 53 furlongs/s}}}\n",
        r"pcie\.h2d\.sm\.bandwidth: cannot read '53 furlongs/s' as a rate",
    ),
    (
        "schema_version: 1\npcie: {duplex_bandwidth: fast}\n",
        r"pcie\.duplex_bandwidth: cannot read 'fast' as a rate",
    ),
    (
        "schema_version: 1\npcie: {h2d: {sm_bandwidth_per_sm: 0}}\n",
        r"pcie\.h2d\.sm_bandwidth_per_sm: must be greater than 0",
    ),
    (
        "schema_version: 1\nssd: {read: {overhead: 8 parsecs}}\n",
        r"ssd\.read\.overhead: cannot read '8 parsecs' as a duration",
    ),
    (
        "schema_version: 1\nssd: {read: {half_bandwidth_queue_depth: -1}}\n",
        r"ssd\.read\.half_bandwidth_queue_depth: expected a number of requests >= 0",
    ),
    ("schema_version: 1\nssd: {flash: {}}\n", r"ssd\.flash: unknown key; choose from: read, write"),
    (
        "schema_version: 1\nnetwork: {bandwidth: 0GB/s}\n",
        r"network\.bandwidth: must be greater than 0",
    ),
    ("schema_version: 1\nnetwork: {bandwidth: .inf}\n", r"network\.bandwidth: must be finite"),
    (
        "schema_version: 1\nnetwork: {half_bandwidth_queue_depth: 1}\n",
        r"network\.half_bandwidth_queue_depth: unknown key",
    ),
    (
        "schema_version: 1\ncompute: {prefill_per_token: -1us}\n",
        r"compute\.prefill_per_token: cannot read '-1us'",
    ),
    ("schema_version: 1\nmatch: soon\n", r"match: cannot read 'soon' as a duration"),
    ("schema_version: 1\nnetwork: 3GB/s\n", r"network: must be a mapping"),
    ("schema_version: 1\nsources: {match: 3}\n", r"sources\.match: a source is a sentence"),
    ("schema_version: 1\nmatch: 1us\nmatch: 2us\n", r"duplicate key 'match'"),
    ("schema_version: 1\nmatch: [1us\n", r"invalid YAML"),
    ("- 1\n", r"a profile is a mapping of sections"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ProfileError, match=message) as err:
        load_profiles([str(path)])
    assert str(err.value).startswith(f"{path}: ")
    assert isinstance(err.value, ConfigError)  # the CLIs report both the same way


def test_errors_keep_their_parts(tmp_path):
    path = write(tmp_path, "bad.yaml", "schema_version: 1\nnetwork: {overhed: 1us}\n")
    with pytest.raises(ProfileError) as err:
        load_profiles([str(path)])
    assert (err.value.source, err.value.key_path) == (str(path), "network.overhed")
    again = pickle.loads(pickle.dumps(err.value))  # sweeps send errors between processes
    assert isinstance(again, ProfileError) and again.key_path == "network.overhed"
    assert "choose from: overhead, per_copy, bandwidth" in str(again)


def test_jitter_is_an_optional_curve_key(tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text(
        "schema_version: 1\n"
        "pcie: {h2d: {sm: {overhead: 1ms, bandwidth: 2GB/s, jitter: 0.2}}}\n"
        "ssd: {read: {overhead: 1ms, bandwidth: 1GB/s, jitter: 0.1}}\n"
    )
    profile = load_profiles([str(path)])
    assert profile.h2d.sm.jitter == 0.2
    assert profile.ssd_read.curve(8).jitter == 0.1
    assert profile.d2h.sm.jitter == 0.0  # left out: every op alike
    path.write_text("schema_version: 1\nnetwork: {jitter: -1}\n")
    with pytest.raises(ProfileError, match=r"network\.jitter"):
        load_profiles([str(path)])


def test_an_ssd_op_pays_per_io_for_each_io_its_blocks_merged_into(tmp_path):
    path = tmp_path / "io.yaml"
    path.write_text("schema_version: 1\nssd: {read: {overhead: 1ms, bandwidth: 1GB/s, "
                    "per_io: 25us}}\n")
    profile = load_profiles([str(path)])
    assert profile.ssd_read.per_io_s == pytest.approx(25e-6)
    assert profile.ssd_write.per_io_s == 0.0
    curve = profile.ssd_read.curve(16)
    # 8 blocks of 128 KiB as 8 I/Os, or merged into 1: 7 x 25 us apart
    assert curve.time(1 << 20, 8) - curve.time(1 << 20, 1) == pytest.approx(7 * 25e-6)
    path.write_text("schema_version: 1\nssd: {write: {per_io: fast}}\n")
    with pytest.raises(ProfileError, match=r"ssd\.write\.per_io"):
        load_profiles([str(path)])
    path.write_text("schema_version: 1\npcie: {h2d: {sm: {per_io: 1us}}}\n")
    with pytest.raises(ProfileError, match="unknown key"):
        load_profiles([str(path)])


def test_an_op_below_the_queue_depth_pays_for_its_empty_slots():
    ssd = SsdCurve(overhead_s=0.0, bandwidth=8e9, half_bandwidth_queue_depth=8)
    block = 1 << 20
    link_time = ssd.curve(8).time(2 * block)  # at queue depth 8: 8 GB/s x 8 / 16
    alone = link_time + (8 - 2) * ssd.idle_slot_s(8, block)
    assert alone == pytest.approx(2 * block / (8e9 * 2 / 10))  # q = 2 I/Os in flight


def test_jitter_draws_are_repeatable_with_median_one():
    import simpy

    from flexkv_sim.devices import FluidLink

    def times(seed):
        env = simpy.Environment()
        link = FluidLink(env, "ssd_read", Curve(0.0, 1e9, jitter=0.3), seed=seed)
        out = []
        for i in range(401):
            start = i * 10.0

            def go(_ev, start=start):
                link.transfer(10**6, 1, lambda: out.append(env.now - start))

            env.timeout(start).callbacks.append(go)
        env.run()
        return out

    first = times(0)
    assert first == times(0)
    assert first != times(1)
    assert sorted(first)[200] == pytest.approx(1e-3, rel=0.1)
