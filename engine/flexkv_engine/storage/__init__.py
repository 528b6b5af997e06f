"""Storage tiers of the engine: the SSD block files, their slot table, and the backends
that move blocks between the host pool and them (:mod:`.ssd_files`, :mod:`.ssd_table`,
:mod:`.ssd_io`).

Light to import: standard library only; the native module is loaded when an io_uring
backend is opened.
"""

from .ssd_files import SsdFiles, SsdFilesError, filesystem_type
from .ssd_io import (
    HostBuffer,
    SsdBackend,
    SsdCompletion,
    SsdFault,
    ThreadSsdBackend,
    UringSsdBackend,
    io_uring_unavailable_reason,
    open_ssd_backend,
)
from .ssd_table import SlotTable

__all__ = [
    "HostBuffer",
    "SlotTable",
    "SsdBackend",
    "SsdCompletion",
    "SsdFault",
    "SsdFiles",
    "SsdFilesError",
    "ThreadSsdBackend",
    "UringSsdBackend",
    "filesystem_type",
    "io_uring_unavailable_reason",
    "open_ssd_backend",
]
