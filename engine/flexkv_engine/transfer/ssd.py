"""The SSD paths as a mover: jobs go to an io_uring or thread backend of ``storage.ssd_io``."""

from __future__ import annotations

from typing import Any

from ..core.paths import SSD_READ, SSD_WRITE
from .protocol import Done, Job


class SsdMover:
    """SSD read (SSD -> host pool) and write (host pool -> SSD) on one backend."""

    paths = (SSD_READ, SSD_WRITE)

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def submit(self, job: Job) -> None:
        if job.path == SSD_READ:
            self.backend.submit(job.job_id, False, job.src_ids, job.dst_ids)
        else:
            self.backend.submit(job.job_id, True, job.dst_ids, job.src_ids)

    def poll(self, timeout: float | None = 0.0) -> list[Done]:
        return [
            Done(c.job_id, c.ok, c.error, c.bytes, c.queue_s, c.transfer_s)
            for c in self.backend.poll(timeout)
        ]

    def close(self) -> None:
        self.backend.close()
