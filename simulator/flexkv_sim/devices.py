"""Device models of the twin: links whose concurrent transfers share bandwidth.

A transfer of ``b`` bytes on a link costs its curve's fixed latency (overhead and per-copy
costs: time that occupies no bandwidth), then ``b`` bytes of *fluid* work. A link serves
its active transfers by processor sharing: ``n`` active transfers each progress at
``rate / n`` bytes per second. This is tracked with virtual time: ``V`` grows by
``rate / n`` per second, a transfer that joins at ``V0`` ends when ``V`` reaches
``V0 + b``, so an arrival or a departure costs O(log n) and no per-byte work.

Two links of a :class:`DuplexPair` (PCIe H2D and D2H) each run at their own bandwidth
alone, and at most ``duplex_bandwidth / 2`` each while both are busy.

An SSD link knows its queue depth ``q`` and I/O size (one block): an op of ``n < q``
blocks keeps only ``n`` I/Os in flight, so it pays ``per_idle_slot_s`` for each of the
``q - n`` slots it leaves empty (:meth:`flexkv_sim.hardware.SsdCurve.idle_slot_s`).

A curve with ``jitter`` > 0 draws, per op, a factor from a log-normal distribution of
median 1 and that sigma, and scales the op's fixed latency and its bytes of work by it:
the spread of a real device's op times, fitted by calibration. The draws come from a
generator seeded by the link's name and ``seed``, so a replay is repeatable.

A link may sit behind a :class:`Gate`, the engine's queue in front of the device: at
most ``capacity`` units in service, first come first served, the rest waiting (their
wait is the op's ``queue_s``). The PCIe links each have a gate of one (the engine's
copy worker per direction takes one op at a time); the two SSD links share a gate of
the queue depth (one io_uring ring for reads and writes, at most that many I/Os in
flight), where an op needs one unit per I/O, up to the whole depth.

Links also keep the busy time and the bytes they moved, per time bin, for utilisation
plots. They schedule their steps as :class:`~flexkv_sim.calls.Call` entries on the SimPy
queue (:func:`~flexkv_sim.calls.run_events` steps them without SimPy's per-event work).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush

import simpy

from .calls import NORMAL, Call
from .hardware import Curve

_INF = float("inf")


def _superseded() -> None:
    """What a wake-up that an earlier one replaced does when its time comes."""


class Gate:
    """First-come-first-served admission of ``capacity`` units (see the module doc)."""

    __slots__ = ("_waiting", "capacity", "free")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 1)
        self.free = self.capacity
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()

    def enter(self, need: int, start: Callable[[], None]) -> int:
        """Run ``start`` once ``need`` units (capped at the capacity) are free, in
        arrival order; returns the units taken, to give back with :meth:`leave`."""
        need = min(max(need, 1), self.capacity)
        if not self._waiting and self.free >= need:
            self.free -= need
            start()
        else:
            self._waiting.append((need, start))
        return need

    def leave(self, units: int) -> None:
        self.free += units
        waiting = self._waiting
        while waiting and waiting[0][0] <= self.free:
            need, start = waiting.popleft()
            self.free -= need
            start()


class FluidLink:
    """A processor-sharing link: ``transfer(bytes)`` calls back once the bytes moved."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        curve: Curve,
        *,
        bin_s: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.env = env
        self.name = name
        self.curve = curve
        self.bandwidth = curve.bandwidth
        self.jitter = curve.jitter
        self._overhead_s, self._per_copy_s = curve.overhead_s, curve.per_copy_s
        self._rng = random.Random(f"{seed}:{name}") if curve.jitter > 0 else None
        # SSD only: queue depth, I/O size and the latency of one empty queue slot.
        self.queue_depth = 0
        self.io_bytes = 1
        self.per_idle_slot_s = 0.0
        self.gate = None  # the engine's queue in front of the device (sets _alone)
        self.partner: FluidLink | None = None
        self.duplex_rate = float("inf")
        self._vt = 0.0
        self._last = 0.0
        # (V at which it ends, tie-break id, on_done, bytes, gate units to give back)
        self._flows: list[tuple[float, int, Callable[[], None], int, int]] = []
        self._ids = itertools.count()
        self._timer: Call | None = None  # the armed wake-up
        self._timer_at = float("inf")  # when it fires
        self.bin_s = bin_s
        self.busy_bins: dict[int, float] = {}
        self.byte_bins: dict[int, int] = {}
        self.busy_s = 0.0
        self.bytes = 0
        self.ops = 0

    @property
    def active(self) -> int:
        return len(self._flows)

    @property
    def gate(self) -> Gate | None:
        return self._gate

    @gate.setter
    def gate(self, gate: Gate | None) -> None:
        self._gate = gate
        # Behind a gate of one unit one transfer at a time is in latency or moving:
        # _join_alone and _wake_alone do what _join and _wake do for one flow, in fewer steps.
        self._alone = gate is not None and gate.capacity == 1
        self._wake_fn = self._wake_alone if self._alone else self._wake
        self._latent: tuple[int, Callable[[], None], float, int] | None = None

    def rate(self) -> float:
        partner = self.partner
        if partner is not None and partner._flows:
            return min(self.bandwidth, self.duplex_rate)
        return self.bandwidth

    def transfer(
        self, num_bytes: int, copies: int, on_done: Callable[[], None], need: int = 1,
        admitted: list[float] | None = None,
    ) -> None:
        """Submit a transfer now; ``on_done()`` is called when its last byte has moved.

        Behind a gate it starts once ``need`` units are free (``admitted``, a list, gets
        the time it started). A plain callback rather than an event: a SimPy event would
        cost one more scheduler step per transfer.
        """
        gate = self._gate
        if gate is None:
            if admitted is not None:
                admitted.append(self.env._now)
            self._start(num_bytes, copies, on_done, 0)
            return
        # Gate.enter, inlined for the op that finds its units free (no closure to make).
        units = 1 if self._alone else min(max(need, 1), gate.capacity)
        if not gate._waiting and gate.free >= units:
            gate.free -= units
            if admitted is not None:
                admitted.append(self.env._now)
            self._start(num_bytes, copies, on_done, units)
            return
        self._wait(gate, units, num_bytes, copies, on_done, admitted)

    # Closures live in helpers of their own: a function that makes one pays for cells
    # for its captured variables on every call, the paths that make none included.
    def _wait(
        self, gate: Gate, units: int, num_bytes: int, copies: int, on_done: Callable[[], None],
        admitted: list[float] | None,
    ) -> None:
        """Queue the op at the gate until its units are free."""

        def start() -> None:
            if admitted is not None:
                admitted.append(self.env._now)
            self._start(num_bytes, copies, on_done, units)

        gate._waiting.append((units, start))

    def _start(self, num_bytes: int, copies: int, on_done: Callable[[], None], units: int) -> None:
        latency = self._overhead_s + copies * self._per_copy_s
        if self.per_idle_slot_s:
            latency += self.per_idle_slot_s * max(0.0, self.queue_depth - num_bytes / self.io_bytes)
        self.ops += 1
        work = num_bytes
        if self._rng is not None:
            factor = self._rng.lognormvariate(0.0, self.jitter)
            latency *= factor
            work = num_bytes * factor
        env = self.env
        if self._alone:  # one op at a time: it waits out its latency on the link
            self._latent = (num_bytes, on_done, work, units)
            if latency > 0:  # call_later, inlined
                heappush(env._queue, (env._now + latency, NORMAL, next(env._eid),
                                      Call(self._join_alone)))
            else:
                self._join_alone()
            return
        if latency <= 0:
            self._join(num_bytes, on_done, work, units)
        else:
            self._join_later(latency, num_bytes, on_done, work, units)

    def _join_later(
        self, latency: float, num_bytes: int, on_done: Callable[[], None], work: float,
        units: int,
    ) -> None:
        join, env = self._join, self.env

        def call_join() -> None:
            join(num_bytes, on_done, work, units)

        heappush(env._queue, (env._now + latency, NORMAL, next(env._eid), Call(call_join)))

    # -- processor sharing ---------------------------------------------------------------
    def _advance(self) -> None:
        now = self.env._now
        flows = self._flows
        if flows:
            elapsed = now - self._last
            if elapsed > 0:
                self._vt += elapsed * self.rate() / len(flows)
                self._record_busy(self._last, now)
        self._last = now

    def _record_busy(self, start: float, end: float) -> None:
        self.busy_s += end - start
        width = self.bin_s
        bins = self.busy_bins
        b = int(start // width)
        edge = (b + 1) * width
        if start < end <= edge:  # within one bin: what the loop below does in one turn
            bins[b] = bins.get(b, 0.0) + (end - start)
            return
        while start < end:
            edge = (b + 1) * width
            if edge <= start:  # float rounding put start on the next bin already
                b += 1
                continue
            stop = edge if edge < end else end
            bins[b] = bins.get(b, 0.0) + (stop - start)
            start = stop
            b += 1

    def _join(self, num_bytes: int, done: Callable[[], None], work: float, units: int) -> None:
        """Start moving: ``work`` bytes of fluid (``num_bytes`` scaled by the jitter)."""
        partner, flows, now = self.partner, self._flows, self.env._now
        # _advance of both links; on an idle link it only moves the clock (inlined).
        if flows:
            self._advance()
        else:
            self._last = now
        if partner is not None:
            if partner._flows:
                partner._advance()
            else:
                partner._last = now
        heappush(flows, (self._vt + work, next(self._ids), done, num_bytes, units))
        self._reschedule()
        if partner is not None and len(flows) == 1 and partner._flows:
            partner._reschedule()  # its rate just dropped to the duplex share

    def _reschedule(self) -> None:
        """Arm the wake-up for the next departure, unless one is already due before it."""
        flows = self._flows
        if not flows:
            return
        env = self.env
        now = env._now
        remaining = flows[0][0] - self._vt
        deadline = now + max(remaining, 0.0) * len(flows) / self.rate()
        if self._timer_at <= deadline:
            return  # an earlier wake-up is armed: it will re-arm for this one
        if self._timer is not None:
            self._timer.fn = _superseded  # a later wake-up, now due after this one
        self._timer_at = deadline
        self._timer = timer = Call(self._wake_fn)
        heappush(env._queue, (now + (deadline - now), NORMAL, next(env._eid), timer))

    def _wake(self) -> None:
        self._timer, self._timer_at = None, _INF
        partner, flows = self.partner, self._flows
        self._advance()
        if partner is not None:
            if partner._flows:
                partner._advance()
            else:
                partner._last = self._last
        # Transfers that end together finish in one wake-up. The tolerance (a byte, or
        # the float resolution of V when V is large) keeps rounding from re-arming the
        # timer for a remainder that can never be reached.
        vt = self._vt
        limit = vt + max(1.0, abs(vt) * 1e-12)
        if not flows or flows[0][0] > limit:  # early: the rate dropped since it was armed
            self._reschedule()
            return
        now_bin = int(self._last // self.bin_s)
        byte_bins = self.byte_bins
        _, _, done, num_bytes, units = heappop(flows)
        self.bytes += num_bytes
        byte_bins[now_bin] = byte_bins.get(now_bin, 0) + num_bytes
        finished = None
        while flows and flows[0][0] <= limit:
            if finished is None:
                finished = [(done, units)]
            _, _, done, num_bytes, units = heappop(flows)
            self.bytes += num_bytes
            byte_bins[now_bin] = byte_bins.get(now_bin, 0) + num_bytes
            finished.append((done, units))
        if flows:
            self._reschedule()
        elif partner is not None and partner._flows:
            partner._reschedule()  # its rate just rose back to its own bandwidth
        # The transfers' callbacks, after the link's state is settled: they may submit more.
        gate = self._gate
        if finished is None:
            if units:
                gate.leave(units)  # type: ignore[union-attr]
            done()
            return
        for done, units in finished:
            if units:
                gate.leave(units)  # type: ignore[union-attr]
            done()

    # One flow at most (a gate of one): the steps of _join, _reschedule and _wake with
    # len(flows) == 1 written out, the same operations in the same order (x * 1 and x / 1
    # are x exactly, and min/max are spelled as comparisons that pick the same operand,
    # so the arithmetic is the general path's).
    def _join_alone(self) -> None:
        """_join of the op in ``_latent`` (set by _start)."""
        num_bytes, done, work, units = self._latent  # type: ignore[misc]
        self._latent = None
        env, partner, flows = self.env, self.partner, self._flows
        if flows:  # cannot happen behind a gate of one; the general path stays right
            self._join(num_bytes, done, work, units)
            return
        now = self._last = env._now
        busy = partner is not None and partner._flows  # the partner moves bytes
        if busy:
            partner._advance()  # type: ignore[union-attr]
        elif partner is not None:
            partner._last = now
        vt = self._vt
        end = vt + work
        flows.append((end, 0, done, num_bytes, units))
        remaining = end - vt
        rate = self.bandwidth
        if busy and self.duplex_rate < rate:
            rate = self.duplex_rate
        deadline = now + (remaining if remaining >= 0.0 else 0.0) / rate
        if self._timer_at > deadline:
            if self._timer is not None:
                self._timer.fn = _superseded
            self._timer_at = deadline
            self._timer = timer = Call(self._wake_alone)
            heappush(env._queue, (now + (deadline - now), NORMAL, next(env._eid), timer))
        if busy:
            partner._reschedule()  # type: ignore[union-attr]  # its rate dropped to the duplex share

    def _wake_alone(self) -> None:
        flows = self._flows
        if len(flows) != 1:  # cannot happen behind a gate of one
            self._wake()
            return
        self._timer, self._timer_at = None, _INF
        partner = self.partner
        now = self.env._now
        busy = partner is not None and partner._flows
        last = self._last
        if now > last:
            rate = self.bandwidth
            if busy and self.duplex_rate < rate:
                rate = self.duplex_rate
            self._vt += (now - last) * rate
            self._record_busy(last, now)
        self._last = now
        if busy:
            partner._advance()  # type: ignore[union-attr]
        elif partner is not None:
            partner._last = now
        vt = self._vt
        tolerance = abs(vt) * 1e-12
        if flows[0][0] > vt + (tolerance if tolerance > 1.0 else 1.0):  # early: rate dropped
            self._reschedule()
            return
        _, _, done, num_bytes, units = flows.pop()
        self.bytes += num_bytes
        now_bin = int(now // self.bin_s)
        byte_bins = self.byte_bins
        byte_bins[now_bin] = byte_bins.get(now_bin, 0) + num_bytes
        if busy:
            partner._reschedule()  # type: ignore[union-attr]  # its rate rose back
        if units:
            self._gate.leave(units)  # type: ignore[union-attr]
        done()

    def finish(self) -> None:
        """Account busy time up to ``env.now`` (call once the simulation is over)."""
        self._advance()


class HostCpu(FluidLink):
    """The engine's host CPUs: ``cpus`` of them, shared by the jobs running at once.

    A job is ``seconds`` of CPU work; alone it takes that long (one thread uses one CPU
    at most), and ``n`` jobs at once each get ``min(1, cpus / n)`` of a CPU (processor
    sharing, as the kernel's scheduler shares CPUs among busy threads).
    """

    UNIT = 1e12  # work in CPU picoseconds: the link moves integers

    def __init__(self, env: simpy.Environment, cpus: float, *, bin_s: float = 1.0) -> None:
        super().__init__(env, "host", Curve(bandwidth=self.UNIT), bin_s=bin_s)
        self.cpus = float(cpus)

    def rate(self) -> float:
        return self.UNIT * min(self.cpus, max(len(self._flows), 1))

    def run(self, seconds: float, then: Callable[[], None]) -> None:
        """``seconds`` of CPU work starting now; ``then()`` once it is done."""
        self.transfer(max(round(seconds * self.UNIT), 1), 1, then)


class DuplexPair:
    """Two links of one PCIe slot: alone each runs at its bandwidth, together they share."""

    def __init__(self, h2d: FluidLink, d2h: FluidLink, duplex_bandwidth: float) -> None:
        h2d.partner, d2h.partner = d2h, h2d
        h2d.duplex_rate = d2h.duplex_rate = duplex_bandwidth / 2
        self.h2d, self.d2h = h2d, d2h
