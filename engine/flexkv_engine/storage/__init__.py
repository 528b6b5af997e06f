"""Storage tiers of the engine: the SSD block files and the backends that move blocks
between the host pool and them (:mod:`.ssd_files`, :mod:`.ssd_io`).

Light to import: standard library only; the native module is loaded when an io_uring
backend is opened.
"""

from .ssd_files import SsdFiles, SsdFilesError, filesystem_type
from .ssd_io import (
    HostBuffer,
    SsdBackend,
    SsdCompletion,
    ThreadSsdBackend,
    UringSsdBackend,
    io_uring_unavailable_reason,
    open_ssd_backend,
)

__all__ = [
    "HostBuffer",
    "SsdBackend",
    "SsdCompletion",
    "SsdFiles",
    "SsdFilesError",
    "ThreadSsdBackend",
    "UringSsdBackend",
    "filesystem_type",
    "io_uring_unavailable_reason",
    "open_ssd_backend",
]
