"""Trace replay in the twin: hit-rate mode (no timing) and, later, timing mode (SimPy)."""

from .hitrate import HitRateResult, replay_hitrate

__all__ = ["HitRateResult", "replay_hitrate"]
