"""Calibration of the twin against ``flexkv-run`` runs, and its measured prediction error.

``fit``: per-path transfer curves (overhead + bytes / bandwidth) by least squares from a
run's transfer records. ``validate``: replay a run's trace in the twin with a profile,
under the run's config and pacing, and compare hit rates, latencies and bytes.
"""

from .fit import PathFit, calibrate, load_run
from .validate import validate

__all__ = ["PathFit", "calibrate", "load_run", "validate"]
