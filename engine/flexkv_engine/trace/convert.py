"""Converting any importable trace into our schema."""

from __future__ import annotations

import os

from .files import PathLike
from .reader import read_trace
from .writer import TraceWriter


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    format: str | None = None,
    block_size: int | None = None,
) -> int:
    """Write the trace ``src`` (any registered format) to ``dst`` in our schema.

    Returns the number of records written after the header. The output appears only
    when complete: it is written beside ``dst`` and renamed into place, so a bad input
    line leaves no half-written file. ``dst`` is gzip-compressed when it ends in ``.gz``.
    """
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"convert would overwrite its input {os.fspath(src)!r}")
    trace = read_trace(src, format=format, block_size=block_size)
    dst = os.fspath(dst)
    partial = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.partial")
    written = 0
    try:
        with TraceWriter(partial, trace.header, compress=dst.endswith(".gz")) as writer:
            for record in trace:
                writer.write(record)
                written += 1
        os.replace(partial, dst)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return written
