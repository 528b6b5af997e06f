"""Hardware profiles: how long a transfer or a prefill takes on a given machine.

A profile is a YAML file in ``scenarios/hardware/`` (schema in its README.md). Several
profiles merge, section by section, later ones winning: a host profile (PCIe, compute)
plus an SSD profile plus a network profile is the usual set. Every number may carry a
unit (``53GB/s``, ``8us``) and should name its source under ``sources``.

Transfer time of one op = fixed overhead + per-copy overhead x copies + bytes / bandwidth,
where concurrent ops on one link share its bandwidth (see :mod:`flexkv_sim.devices`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flexkv_engine.config import CacheConfig, ComputeModel
from flexkv_engine.units import parse_duration, parse_rate

PROFILE_SCHEMA_VERSION = 1
HARDWARE_DIR_ENV = "FLEXKV_HARDWARE_DIR"
DEFAULT_PROFILES = ("h100-sxm-pcie5", "ssd-gen4", "network-25gbe")


class ProfileError(ValueError):
    """A hardware profile is missing, malformed or names an unknown key."""


@dataclass(frozen=True)
class Curve:
    """``overhead_s + copies * per_copy_s + bytes / bandwidth`` seconds for one op."""

    overhead_s: float = 0.0
    bandwidth: float = 1e12  # bytes/s
    per_copy_s: float = 0.0

    def time(self, num_bytes: float, copies: int = 1) -> float:
        return self.overhead_s + copies * self.per_copy_s + num_bytes / self.bandwidth


@dataclass(frozen=True)
class PcieDirection:
    """One direction of the GPU <-> host link: the SM kernel path and the copy-engine path."""

    sm: Curve = Curve()
    sm_bandwidth_per_sm: float = 1e12  # bytes/s that one SM's worth of blocks moves
    ce: Curve = Curve()

    def curve(self, use_ce: bool, sms: int) -> Curve:
        """The curve of the configured copy mode (SM bandwidth grows with the grid)."""
        if use_ce:
            return self.ce
        return replace(self.sm, bandwidth=min(self.sm.bandwidth, sms * self.sm_bandwidth_per_sm))


@dataclass(frozen=True)
class SsdCurve:
    """SSD throughput with queue depth q: ``bandwidth * q / (q + half_bandwidth_queue_depth)``."""

    overhead_s: float = 0.0
    bandwidth: float = 1e12
    half_bandwidth_queue_depth: float = 0.0

    def curve(self, queue_depth: int) -> Curve:
        q = max(queue_depth, 1)
        return Curve(self.overhead_s, self.bandwidth * q / (q + self.half_bandwidth_queue_depth))


@dataclass(frozen=True)
class HardwareProfile:
    names: tuple[str, ...] = ()
    h2d: PcieDirection = PcieDirection()
    d2h: PcieDirection = PcieDirection()
    duplex_bandwidth: float = 2e12  # both directions at once, in total
    ssd_read: SsdCurve = SsdCurve()
    ssd_write: SsdCurve = SsdCurve()
    network: Curve = Curve()
    match_s: float = 0.0  # planning a GET (index match) before any transfer starts
    compute: ComputeModel = ComputeModel()
    sources: dict[str, str] = field(default_factory=dict)

    def h2d_curve(self, cache: CacheConfig) -> Curve:
        return self.h2d.curve(cache.use_ce_transfer_h2d, cache.transfer_sms_h2d)

    def d2h_curve(self, cache: CacheConfig) -> Curve:
        return self.d2h.curve(cache.use_ce_transfer_d2h, cache.transfer_sms_d2h)


def hardware_dir() -> Path:
    """``$FLEXKV_HARDWARE_DIR``, or the repository's ``scenarios/hardware``."""
    configured = os.environ.get(HARDWARE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "scenarios" / "hardware"


def find_profile(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ProfileError(f"hardware profile {name}: no such file")
        return path
    candidate = hardware_dir() / f"{name}.yaml"
    if not candidate.exists():
        known = sorted(p.stem for p in hardware_dir().glob("*.yaml"))
        raise ProfileError(
            f"unknown hardware profile {name!r}; choose from: {', '.join(known)} (or a path)"
        )
    return candidate


def load_profiles(names: Iterable[str] = DEFAULT_PROFILES) -> HardwareProfile:
    """Merge the named profiles (names in ``scenarios/hardware`` or paths), later wins."""
    import yaml

    profile = HardwareProfile()
    for name in names:
        path = find_profile(name)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
        profile = merge_profile(profile, data, str(path))
    return profile


def merge_profile(base: HardwareProfile, data: Any, source: str) -> HardwareProfile:
    """``base`` with the sections of one profile document applied over it."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a profile is a mapping of sections")
    version = data.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        raise ProfileError(
            f"{source}: schema_version must be {PROFILE_SCHEMA_VERSION}, got {version!r}"
        )
    known = {"schema_version", "name", "description", "pcie", "ssd", "network", "compute",
             "match", "sources"}
    unknown = set(data) - known
    if unknown:
        raise ProfileError(
            f"{source}: unknown section(s) {sorted(unknown)}; choose from: {sorted(known)}"
        )
    updates: dict[str, Any] = {"names": (*base.names, str(data.get("name", source)))}
    pcie = _section(data, "pcie", source)
    for direction in ("h2d", "d2h"):
        if direction in pcie:
            updates[direction] = _pcie(pcie[direction], f"{source}: pcie.{direction}")
    if "duplex_bandwidth" in pcie:
        updates["duplex_bandwidth"] = parse_rate(pcie["duplex_bandwidth"], "pcie.duplex_bandwidth")
    ssd = _section(data, "ssd", source)
    for kind in ("read", "write"):
        if kind in ssd:
            updates[f"ssd_{kind}"] = _build(SsdCurve, ssd[kind], f"{source}: ssd.{kind}")
    if "network" in data:
        updates["network"] = _build(Curve, data["network"], f"{source}: network")
    if "match" in data:
        updates["match_s"] = parse_duration(data["match"], f"{source}: match")
    if "compute" in data:
        updates["compute"] = _build(ComputeModel, data["compute"], f"{source}: compute")
    updates["sources"] = {**base.sources, **{str(k): str(v) for k, v in
                                             _section(data, "sources", source).items()}}
    return replace(base, **updates)


def _section(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ProfileError(f"{source}: {name} must be a mapping")
    return value


def _pcie(data: Any, where: str) -> PcieDirection:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where} must be a mapping with sm and ce")
    unknown = set(data) - {"sm", "ce", "sm_bandwidth_per_sm"}
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}")
    return PcieDirection(
        sm=_build(Curve, data.get("sm", {}), f"{where}.sm"),
        sm_bandwidth_per_sm=parse_rate(data.get("sm_bandwidth_per_sm", 1e12), where),
        ce=_build(Curve, data.get("ce", {}), f"{where}.ce"),
    )


# Field name in YAML -> (dataclass field, parser). Durations end in _s in Python only.
_PARSERS = {
    "overhead": ("overhead_s", parse_duration),
    "per_copy": ("per_copy_s", parse_duration),
    "bandwidth": ("bandwidth", parse_rate),
    "half_bandwidth_queue_depth": ("half_bandwidth_queue_depth", float),
    "prefill_fixed": ("prefill_fixed_s", parse_duration),
    "prefill_per_token": ("prefill_per_token_s", parse_duration),
    "prefill_quadratic": ("prefill_quadratic_s", parse_duration),
    "decode_step": ("decode_step_s", parse_duration),
}


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where} must be a mapping")
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        target = _PARSERS.get(key)
        if target is None or target[0] not in names:
            valid = sorted(k for k, (f, _) in _PARSERS.items() if f in names)
            raise ProfileError(f"{where}: unknown key {key!r}; choose from: {', '.join(valid)}")
        try:
            kwargs[target[0]] = target[1](value, f"{where}.{key}") if target[1] is not float \
                else float(value)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"{where}.{key}: {exc}") from exc
    return cls(**kwargs)
