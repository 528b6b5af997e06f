"""Reading traces of any registered format into our records, streaming."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from itertools import chain
from operator import attrgetter
from typing import Any

from .errors import TraceError
from .files import PathLike, numbered_lines
from .importers import IMPORTERS, Importer, get_importer
from .records import Record, RequestRecord, TraceHeader


def detect_format(first_line: Any) -> str:
    """Name the registered format of a trace from its first non-blank line.

    ``first_line`` is the line's text (str or bytes) or its already parsed JSON value.
    Raises :class:`TraceError` listing the known formats when none matches.
    """
    obj = first_line
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError:  # not JSON: importers of text formats look at the text
            obj = obj.decode("utf-8", "replace") if isinstance(obj, bytes) else obj
    for name, importer in IMPORTERS.items():
        if importer.detect(obj):
            return name
    raise TraceError(
        "cannot tell the trace format from its first line; known formats: "
        f"{', '.join(sorted(IMPORTERS))} (name one with format=...)"
    )


class Trace:
    """A trace file opened for reading: its header, and its records on iteration.

    Each iteration re-opens the file and streams it, so a ``Trace`` may be iterated
    more than once and holds no open file between iterations.
    """

    def __init__(
        self, path: PathLike, format: str | None = None, block_size: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        self._block_size = block_size
        lines = numbered_lines(self.path)
        try:
            first = next(lines, None)
            if first is None:
                raise TraceError("the file is empty", self.path)
            if format is None:
                try:
                    format = detect_format(first[1])
                except TraceError as exc:
                    raise exc.at(self.path, first[0]) from None
            try:
                self._importer: Importer = get_importer(format)
            except TraceError as exc:
                raise exc.at(self.path, None) from None
            self.header: TraceHeader
            self.header, _ = self._importer.read(chain([first], lines), self.path, block_size)
        finally:
            lines.close()
        #: Registry name of the file's format (``flexkv``, ``mooncake``, ...).
        self.format: str = format

    def __iter__(self) -> Iterator[Record]:
        lines = numbered_lines(self.path)
        try:
            _, records = self._importer.read(lines, self.path, self._block_size)
            yield from records
        finally:
            lines.close()

    def requests(self) -> Iterator[RequestRecord]:
        """Only the request records, in file order."""
        for record in self:
            if type(record) is RequestRecord:
                yield record

    def __repr__(self) -> str:
        return f"Trace({self.path!r}, format={self.format!r})"


def read_trace(
    path: PathLike, *, format: str | None = None, block_size: int | None = None
) -> Trace:
    """Open a trace of any registered format (detected from its first line by default).

    The header is read now, so format errors in it surface here; records are decoded
    lazily while iterating. ``block_size`` gives the tokens per key for formats that do
    not record it (Mooncake: 512 by default); for our own format it must equal the
    header's ``tokens_per_block`` if given.
    """
    return Trace(path, format, block_size)


def load_requests(
    path: PathLike, *, format: str | None = None, block_size: int | None = None, sort: bool = True
) -> tuple[TraceHeader, list[RequestRecord]]:
    """The header and every request record; stably sorted by ``t`` when ``sort``."""
    trace = read_trace(path, format=format, block_size=block_size)
    requests = list(trace.requests())
    if sort:
        requests.sort(key=attrgetter("t"))
    return trace.header, requests
