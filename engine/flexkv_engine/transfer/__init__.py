"""Byte movement behind one small protocol: ``submit`` a job, ``poll`` for finished ones.

Each path of a transfer graph (H2D, D2H, SSD read/write, remote) has a mover: torch
copies, CUDA kernels, io_uring, pread threads, and the twin's SimPy devices all fit it.
"""

from .protocol import Done, Job, Mover

__all__ = ["Done", "Job", "Mover"]
