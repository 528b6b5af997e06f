"""Scheduled calls (flexkv_sim.calls) step in SimPy's order; the gate-of-one link path
gives what the general processor-sharing path gives."""

from __future__ import annotations

import random
from collections import deque

import simpy

from flexkv_sim.calls import call_later, run_events, schedule_arrival
from flexkv_sim.devices import DuplexPair, FluidLink, Gate
from flexkv_sim.hardware import Curve


def _schedule(env: simpy.Environment, log: list, use_calls: bool, seed: int) -> None:
    """Callbacks that schedule more at random (ties included), as calls or Timeouts."""
    rng = random.Random(seed)

    def later(delay: float, name: str) -> None:
        def fire(_ev: object = None) -> None:
            log.append((env.now, name))
            if len(log) < 300:
                for k in range(rng.randrange(3)):
                    later(rng.choice((0.0, 0.5, 1.0, rng.random())), f"{name}.{k}")

        if use_calls:
            call_later(env, delay, fire)
        else:
            env.timeout(delay).callbacks.append(fire)

    for i in range(20):
        later(rng.choice((0.0, 1.0, rng.random())), str(i))


def test_calls_fire_in_the_order_timeouts_would() -> None:
    for seed in range(5):
        logs = []
        for use_calls, runner in ((False, "simpy"), (True, "simpy"), (True, "fast")):
            env = simpy.Environment()
            log: list = []
            _schedule(env, log, use_calls, seed)
            if runner == "fast":
                run_events(env)
            else:
                env.run()
            logs.append(log)
        assert logs[0] == logs[1] == logs[2]


def _stopped_at_one(fast: bool) -> list:
    env = simpy.Environment()
    log: list = []
    for t in (0.5, 1.0, 1.0, 2.0):
        call_later(env, t, lambda t=t: log.append((env.now, t)))
    if fast:
        run_events(env, until=1.0)
    else:
        env.run(until=1.0)
    log.append(("stopped", env.now))
    if fast:
        run_events(env)
    else:
        env.run()
    return log


def test_run_events_until_stops_as_env_run_does() -> None:
    expected = [(0.5, 0.5), ("stopped", 1.0), (1.0, 1.0), (1.0, 1.0), (2.0, 2.0)]
    assert _stopped_at_one(False) == _stopped_at_one(True) == expected


def test_arrivals_kept_apart_merge_by_key_even_out_of_order() -> None:
    env = simpy.Environment()
    arrivals: deque = deque()
    log: list = []
    for t in (1.0, 2.0, 0.5, 2.0, 3.0):  # 0.5 comes late: it goes on the heap
        schedule_arrival(env, arrivals, t, lambda t=t: log.append(t))
    call_later(env, 2.0, lambda: log.append("other"))
    run_events(env, arrivals=arrivals)
    assert log == [0.5, 1.0, 2.0, 2.0, "other", 3.0]


def _pcie(env: simpy.Environment, alone: bool) -> tuple[FluidLink, FluidLink]:
    h2d = FluidLink(env, "h2d", Curve(5e-6, 50e9), bin_s=0.01)
    d2h = FluidLink(env, "d2h", Curve(3e-6, 40e9), bin_s=0.01)
    DuplexPair(h2d, d2h, 60e9)
    for link in (h2d, d2h):
        link.gate = Gate(1)
        if not alone:  # the general path, as for a gate of several units
            link._alone = False
            link._wake_fn = link._wake
    return h2d, d2h


def _duplex_run(alone: bool) -> tuple[list, list]:
    """Overlapping ops on both directions, queued at their gates: end times and stats."""
    env = simpy.Environment()
    links = _pcie(env, alone)
    rng = random.Random(7)
    ends: list = []

    def submit(link: FluidLink, size: int, i: int) -> None:
        link.transfer(size, 1, lambda: ends.append((i, env.now)), 1)

    for i in range(400):
        link = links[rng.randrange(2)]
        size = rng.choice((1 << 20, 64 << 20, rng.randrange(1, 1 << 26)))
        call_later(env, rng.random() * 0.2, lambda a=(link, size, i): submit(*a))
    run_events(env)
    for link in links:
        link.finish()
    return ends, [(k.busy_s, k.bytes, k.ops, k.busy_bins, k.byte_bins) for k in links]


def test_a_gate_of_one_link_matches_the_general_path() -> None:
    alone, general = _duplex_run(True), _duplex_run(False)
    assert len(alone[0]) == 400
    assert alone == general
