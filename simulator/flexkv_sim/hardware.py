"""Hardware profiles: how long a transfer or a prefill takes on a given machine.

A profile is a YAML file in ``scenarios/hardware/`` (schema in ``scenarios/README.md``).
Several profiles merge key by key, later ones winning: a host profile (PCIe, compute) plus
an SSD profile plus a network profile is the usual set, and a small file that sets a few
keys (a calibration) can go last. Every number may carry a unit (``53GB/s``, ``8us``)
and names its source under ``sources``.

Transfer time of one op = fixed overhead + per-copy overhead x copies + bytes / bandwidth
(an SSD op's copies are its I/Os, at ``per_io`` each), where concurrent ops on one link
share its bandwidth (see :mod:`flexkv_sim.devices`),
times a per-op factor of median 1 when the curve has ``jitter`` (a fitted spread).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flexkv_engine.config import CacheConfig, ComputeModel, ConfigError
from flexkv_engine.config.text import parse_yaml
from flexkv_engine.units import parse_duration, parse_rate

PROFILE_SCHEMA_VERSION = 1
HARDWARE_DIR_ENV = "FLEXKV_HARDWARE_DIR"
DEFAULT_PROFILES = ("h100-sxm-pcie5", "ssd-gen4", "network-25gbe")
#: What the replay commands say when ``--hardware`` is given in hit-rate mode: the
#: profiles are loaded and checked (a bad one is an error in either mode), then unused.
HITRATE_HARDWARE_NOTE = (
    "hardware profiles do not change hit rates (hitrate mode moves no bytes and times "
    "nothing); the profiles given were checked, and --mode timing uses them"
)


class ProfileError(ConfigError):
    """A hardware profile is missing, malformed or names an unknown key (a config error)."""

    def __reduce__(self) -> tuple[Callable[..., ProfileError], tuple[object, ...]]:
        # ConfigError's own would come back from a sweep worker as a plain ConfigError.
        return (_profile_error, (self.reason, self.key_path, self.source, self.hint))


def _profile_error(
    reason: str, key_path: str, source: str | None, hint: str | None
) -> ProfileError:
    return ProfileError(reason, key_path=key_path, source=source, hint=hint)


@dataclass(frozen=True)
class Curve:
    """``overhead_s + copies * per_copy_s + bytes / bandwidth`` seconds for one op.

    ``jitter``: sigma of the log-normal factor (median 1) that scales each op's time in
    the twin; 0 times every op alike.
    """

    overhead_s: float = 0.0
    bandwidth: float = 1e12  # bytes/s
    per_copy_s: float = 0.0
    jitter: float = 0.0

    def time(self, num_bytes: float, copies: int = 1) -> float:
        return self.overhead_s + copies * self.per_copy_s + num_bytes / self.bandwidth


@dataclass(frozen=True)
class PcieDirection:
    """One direction of the GPU <-> host link: the SM kernel path and the copy-engine path.

    ``copy`` is one contiguous pinned-memory copy (``cudaMemcpyAsync``), the reference the
    other two are derived from and compared with; transfers are timed with ``sm`` or ``ce``.
    """

    sm: Curve = Curve()
    sm_bandwidth_per_sm: float = 1e12  # bytes/s that one SM's worth of blocks moves
    ce: Curve = Curve()
    copy: Curve = Curve()

    def curve(self, use_ce: bool, sms: int) -> Curve:
        """The curve of the configured copy mode (SM bandwidth grows with the grid)."""
        if use_ce:
            return self.ce
        return replace(self.sm, bandwidth=min(self.sm.bandwidth, sms * self.sm_bandwidth_per_sm))


@dataclass(frozen=True)
class SsdCurve:
    """SSD throughput with q I/Os in flight: ``bandwidth * q / (q + half_bandwidth_queue_depth)``.

    An op of ``n`` blocks (one I/O each) at queue depth ``Q`` keeps ``q = min(n, Q)`` in
    flight, so alone it takes ``overhead + bytes / bandwidth * (1 + h / q)``: the link
    runs at the queue-depth-``Q`` bandwidth (:meth:`curve`) and an op of ``n < Q``
    blocks adds :meth:`idle_slot_s` for each of the ``Q - n`` slots it leaves empty.
    ``per_io_s``: the cost of each I/O the op's blocks merge into (blocks next to each
    other in a file and in the host pool share one, :mod:`flexkv_engine.core.ssd_ios`).
    """

    overhead_s: float = 0.0
    bandwidth: float = 1e12
    half_bandwidth_queue_depth: float = 0.0
    jitter: float = 0.0
    per_io_s: float = 0.0

    def curve(self, queue_depth: int) -> Curve:
        """The link's curve at queue depth ``queue_depth``; ``copies`` are its I/Os."""
        q = max(queue_depth, 1)
        return Curve(
            self.overhead_s,
            self.bandwidth * q / (q + self.half_bandwidth_queue_depth),
            per_copy_s=self.per_io_s,
            jitter=self.jitter,
        )

    def idle_slot_s(self, queue_depth: int, io_bytes: int) -> float:
        """Latency of one empty slot: ``io_bytes * h / (bandwidth * Q)``."""
        q = max(queue_depth, 1)
        return io_bytes * self.half_bandwidth_queue_depth / (self.bandwidth * q)


@dataclass(frozen=True)
class HardwareProfile:
    names: tuple[str, ...] = ()
    h2d: PcieDirection = PcieDirection()
    d2h: PcieDirection = PcieDirection()
    duplex_bandwidth: float = 2e12  # both directions at once, in total
    ssd_read: SsdCurve = SsdCurve()
    ssd_write: SsdCurve = SsdCurve()
    network: Curve = Curve()
    network_write: Curve | None = None  # remote writes, when they differ from reads
    match_s: float = 0.0  # planning a GET (index match) before any transfer starts
    # from a graph's last op done to its request seeing it done (the engine's completion
    # path: poller wake-up and bookkeeping)
    complete_s: float = 0.0
    # The engine's host CPU (its interpreter and harness), shared by every request: CPU
    # seconds per prompt block in the prefill window and beside the PUT, and the CPUs
    # that this work can use at once (0 per block: not modelled, host work is free)
    prefill_cpu_per_block_s: float = 0.0
    put_cpu_per_block_s: float = 0.0
    host_cpus: float = 1.0
    compute: ComputeModel = field(default_factory=ComputeModel)
    sources: dict[str, str] = field(default_factory=dict)

    def h2d_curve(self, cache: CacheConfig) -> Curve:
        return self.h2d.curve(cache.use_ce_transfer_h2d, cache.transfer_sms_h2d)

    def d2h_curve(self, cache: CacheConfig) -> Curve:
        return self.d2h.curve(cache.use_ce_transfer_d2h, cache.transfer_sms_d2h)

    @property
    def network_write_curve(self) -> Curve:
        return self.network_write if self.network_write is not None else self.network


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
            f"unknown hardware profile {name!r}; choose from: {', '.join(known)} (the "
            f"profiles in {hardware_dir()}), or give a path to a YAML file"
        )
    return candidate


def load_profiles(names: Iterable[str] = DEFAULT_PROFILES) -> HardwareProfile:
    """Merge the named profiles (names in ``scenarios/hardware`` or paths), later wins."""
    if isinstance(names, str):
        names = [names]
    profile = HardwareProfile()
    for name in names:
        path = find_profile(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"cannot read: {exc}", source=str(path)) from None
        try:
            data = parse_yaml(text, str(path))  # refuses a key given twice
        except ConfigError as exc:
            raise ProfileError(exc.reason, source=str(path), hint=exc.hint) from None
        profile = merge_profile(profile, data, str(path))
    return profile


_SECTIONS = (
    "schema_version",
    "name",
    "description",
    "pcie",
    "ssd",
    "network",
    "network_write",
    "compute",
    "match",
    "complete",
    "interpreter",
    "sources",
)


def merge_profile(base: HardwareProfile, data: Any, source: str) -> HardwareProfile:
    """``base`` with one profile document applied over it, key by key.

    A key the document sets replaces the value in ``base``; a key it leaves out keeps it.
    Errors name ``source`` and the key path (``pcie.h2d.sm.bandwidth``).
    """
    if not isinstance(data, Mapping):
        raise ProfileError("a profile is a mapping of sections", source=source)
    version = data.get("schema_version")
    if isinstance(version, bool) or version != PROFILE_SCHEMA_VERSION:
        raise ProfileError(
            f"must be {PROFILE_SCHEMA_VERSION}, got {version!r}",
            key_path="schema_version",
            source=source,
        )
    _check_keys(data, _SECTIONS, "", source)
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise ProfileError("must be a string", key_path=key, source=source)
    updates: dict[str, Any] = {"names": (*base.names, str(data.get("name", source)))}
    pcie = _section(data, "pcie", source)
    _check_keys(pcie, ("h2d", "d2h", "duplex_bandwidth"), "pcie", source)
    for direction in ("h2d", "d2h"):
        if direction in pcie:
            updates[direction] = _pcie(
                getattr(base, direction), pcie[direction], f"pcie.{direction}", source
            )
    if "duplex_bandwidth" in pcie:
        updates["duplex_bandwidth"] = _value(
            _positive_rate, pcie["duplex_bandwidth"], "pcie.duplex_bandwidth", source
        )
    ssd = _section(data, "ssd", source)
    _check_keys(ssd, ("read", "write"), "ssd", source)
    for kind in ("read", "write"):
        if kind in ssd:
            name = f"ssd_{kind}"
            updates[name] = _build(getattr(base, name), ssd[kind], f"ssd.{kind}", source)
    if "network" in data:
        updates["network"] = _build(base.network, data["network"], "network", source)
    if "network_write" in data:
        # Keys it leaves out come from the read curve (this document's, if it sets one).
        start = base.network_write or updates.get("network", base.network)
        updates["network_write"] = _build(start, data["network_write"], "network_write", source)
    updates.update(_host_sections(base, data, source))
    sources = _section(data, "sources", source)
    for key, text in sources.items():
        if not isinstance(key, str) or not isinstance(text, str) or not text.strip():
            raise ProfileError(
                "a source is a sentence naming where the number came from",
                key_path=f"sources.{key}",
                source=source,
            )
    updates["sources"] = {**base.sources, **sources}
    return replace(base, **updates)


def _host_sections(base: HardwareProfile, data: Mapping[str, Any], source: str) -> dict:
    """The ``match``, ``complete`` and ``compute`` sections, where the document sets them."""
    updates: dict[str, Any] = {}
    for key, field_name in (("match", "match_s"), ("complete", "complete_s")):
        if key in data:
            updates[field_name] = _value(parse_duration, data[key], key, source)
    if "compute" in data:
        updates["compute"] = _build(base.compute, data["compute"], "compute", source)
    host = _section(data, "interpreter", source)
    _check_keys(host, tuple(INTERPRETER_KEYS), "interpreter", source)
    for key, field_name in INTERPRETER_KEYS.items():
        if key in host:
            where = f"interpreter.{key}"
            if key == "cpus":
                value = host[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                    raise ProfileError("must be a number >= 1", key_path=where, source=source)
                updates[field_name] = float(value)
            else:
                updates[field_name] = _value(parse_duration, host[key], where, source)
    return updates


#: The ``interpreter`` section: key -> HardwareProfile field.
INTERPRETER_KEYS = {
    "prefill_per_block": "prefill_cpu_per_block_s",
    "put_per_block": "put_cpu_per_block_s",
    "cpus": "host_cpus",
}


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            raise ProfileError(
                "unknown key" if where else "unknown section",
                key_path=f"{where}.{key}" if where else str(key),
                source=source,
                hint=f"choose from: {', '.join(allowed)}",
            )


def _section(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:  # absent, or an empty YAML section
        return {}
    if not isinstance(value, Mapping):
        raise ProfileError("must be a mapping", key_path=name, source=source)
    return value


def _pcie(base: PcieDirection, data: Any, where: str, source: str) -> PcieDirection:
    if not isinstance(data, Mapping):
        raise ProfileError("must be a mapping with sm, ce and copy", key_path=where, source=source)
    _check_keys(data, ("sm", "sm_bandwidth_per_sm", "ce", "copy"), where, source)
    updates: dict[str, Any] = {}
    for curve in ("sm", "ce", "copy"):
        if curve in data:
            updates[curve] = _build(getattr(base, curve), data[curve], f"{where}.{curve}", source)
    if "sm_bandwidth_per_sm" in data:
        updates["sm_bandwidth_per_sm"] = _value(
            _positive_rate, data["sm_bandwidth_per_sm"], f"{where}.sm_bandwidth_per_sm", source
        )
    return replace(base, **updates)


def _positive_rate(value: object, what: str) -> float:
    rate = parse_rate(value, what)
    if not rate > 0:  # a time is bytes / bandwidth
        raise ValueError(f"{what}: must be greater than 0, got {value!r}")
    return rate


def _jitter(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3:
        raise ValueError(f"{what}: expected a log-normal sigma in [0, 3], got {value!r}")
    return float(value)


def _queue_depth(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what}: expected a number of requests >= 0, got {value!r}")
    return float(value)


# Field name in YAML -> (dataclass field, parser). Durations end in _s in Python only.
_PARSERS: dict[str, tuple[str, Callable[[object, str], float]]] = {
    "overhead": ("overhead_s", parse_duration),
    "per_copy": ("per_copy_s", parse_duration),
    "per_io": ("per_io_s", parse_duration),
    "bandwidth": ("bandwidth", _positive_rate),
    "half_bandwidth_queue_depth": ("half_bandwidth_queue_depth", _queue_depth),
    "jitter": ("jitter", _jitter),
    "prefill_fixed": ("prefill_fixed_s", parse_duration),
    "prefill_per_token": ("prefill_per_token_s", parse_duration),
    "prefill_quadratic": ("prefill_quadratic_s", parse_duration),
    "decode_step": ("decode_step_s", parse_duration),
}


def _value(
    parse: Callable[[object, str], float], value: object, key_path: str, source: str
) -> float:
    try:
        number = parse(value, key_path)
    except ValueError as exc:
        raise ProfileError(
            str(exc).removeprefix(f"{key_path}: "), key_path=key_path, source=source
        ) from None
    if not math.isfinite(number):
        raise ProfileError(f"must be finite, got {value!r}", key_path=key_path, source=source)
    return number


def _build(base: Any, data: Any, where: str, source: str) -> Any:
    """``base`` (a Curve, SsdCurve or ComputeModel) with the keys of ``data`` applied."""
    if not isinstance(data, Mapping):
        raise ProfileError("must be a mapping", key_path=where, source=source)
    names = {f.name for f in fields(base)}
    valid = tuple(k for k, (f, _) in _PARSERS.items() if f in names)
    _check_keys(data, valid, where, source)
    kwargs = {
        _PARSERS[key][0]: _value(_PARSERS[key][1], value, f"{where}.{key}", source)
        for key, value in data.items()
    }
    return replace(base, **kwargs)
