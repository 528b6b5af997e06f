"""Scheduled calls on a SimPy environment, cheaper than Timeout events.

The twin's links and requests do not wait on events: each step schedules the next as a
call, ``fn()`` at a time. A :class:`Call` sits in the environment's queue as SimPy's own
events do, ordered by (time, priority, event id), so ``env.run()`` steps it like any
event, in the same order as a Timeout scheduled at the same moment. :func:`run_events`
is ``env.run()`` for a queue of mostly calls: it calls them directly and hands any other
event (a resource request, the ``until`` stop) to SimPy's own step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import NORMAL, URGENT, StopSimulation

__all__ = ["NORMAL", "Call", "call_later", "run_events", "schedule_arrival"]


class Call:
    """``fn()`` scheduled on a SimPy environment: what ``env.timeout(delay)`` with a
    callback does, as one small object instead of a Timeout, its callback list and a
    lambda.

    It sits in the environment's queue as an event that has succeeded, ordered by
    (time, priority, event id) like a Timeout, so ``env.run()`` steps it as any event,
    and :func:`run_events` calls ``fn`` directly.
    """

    __slots__ = ("fn",)
    _ok = True  # read by SimPy's step: the event succeeded

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    @property
    def callbacks(self) -> list[Callable[[Any], None]]:  # SimPy's step takes them once
        return [self._fire]

    @callbacks.setter
    def callbacks(self, _value: Any) -> None:
        pass

    def _fire(self, _event: Any) -> None:
        self.fn()


def call_later(env: simpy.Environment, delay: float, fn: Callable[[], None]) -> None:
    """Call ``fn()`` after ``delay`` (>= 0): at ``env.now + delay``, after the events
    already due then, exactly as a Timeout of ``delay`` scheduled now would be."""
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), Call(fn)))


def run_events(
    env: simpy.Environment, until: float | None = None,
    arrivals: deque[tuple[float, int, int, Call]] | None = None,
) -> None:
    """``env.run(until)``, stepping :class:`Call` events without SimPy's per-event work.

    Events are taken in the queue's order either way; any other event (a resource
    request, the ``until`` stop) is put back and stepped by SimPy itself. ``arrivals``:
    queue entries kept apart in key order (:func:`schedule_arrival`), merged here by key,
    so that the heap holds only what is in flight and stays shallow.
    """
    if until is not None:  # as env.run(until) does: a stop before the events due then
        at = float(until)
        if at <= env._now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = simpy.Event(env)
        stop._ok, stop._value = True, None
        env.schedule(stop, URGENT, at - env._now)
        stop.callbacks.append(StopSimulation.callback)  # type: ignore[union-attr]
    queue, step, pop = env._queue, env.step, heappop
    later = arrivals if arrivals is not None else deque()
    take = later.popleft
    try:
        while True:
            # The next entry by (time, priority, event id): the heap's or the next arrival.
            if later:
                entry = pop(queue) if queue and queue[0] < later[0] else take()
            elif queue:
                entry = pop(queue)
            else:
                break
            event = entry[3]
            if event.__class__ is Call:
                env._now = entry[0]
                event.fn()
            else:  # from the heap (arrivals are calls): the same entry comes first again
                heappush(queue, entry)
                step()
    except StopSimulation:
        return
    if until is not None:
        raise RuntimeError(f"no scheduled events left but 'until' ({until}) was not reached")


def schedule_arrival(
    env: simpy.Environment, arrivals: deque[tuple[float, int, int, Call]], delay: float,
    fn: Callable[[], None],
) -> None:
    """:func:`call_later`, with the entry kept in ``arrivals`` (for :func:`run_events`)
    while entries come in key order (a trace's arrivals do), else on the heap."""
    entry = (env._now + delay, NORMAL, next(env._eid), Call(fn))
    if arrivals and entry[0] < arrivals[-1][0]:
        heappush(env._queue, entry)
    else:
        arrivals.append(entry)
