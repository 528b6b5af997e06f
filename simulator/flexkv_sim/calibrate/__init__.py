"""Calibration of the twin against ``flexkv-run`` runs, and its measured prediction error.

``fit``: per-path transfer curves (overhead + bytes / bandwidth, SSD queueing, the
op-to-op spread as jitter) from the transfer records of one or more runs, by robust
least squares on each op's time alone (``estimate``). ``validate``: replay a run's trace
in the twin with a profile, under the run's config and pacing, and compare hit rates,
latencies, bytes and per-path op times.
"""

from .fit import PathFit, calibrate, load_run
from .validate import validate

__all__ = ["PathFit", "calibrate", "load_run", "validate"]
