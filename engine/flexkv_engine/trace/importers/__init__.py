"""Registry of trace formats. Our own schema is an importer like the others.

An importer is an object with

* ``name``: its registry key, also the ``format=`` argument of the readers;
* ``detect(obj) -> bool``: whether the first non-blank line belongs to this format.
  ``obj`` is the parsed JSON value of that line, or the line's text when it is not
  JSON (CSV formats, for instance);
* ``read(lines, path, block_size) -> (header, records)``: ``lines`` yields
  ``(line_number, text)`` for the non-blank lines from the start of the file. It must
  return the header before any record is consumed; ``records`` is a lazy iterator.
  ``block_size`` is the caller's tokens per key for formats that do not record it.
  Errors are :class:`TraceError` with the path and line.

Detection tries the importers in registration order and takes the first that says
yes, so a format whose lines carry a superset of another's fields registers before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ..errors import TraceError
from ..records import Record, TraceHeader
from .azure import AzureImporter
from .flexkv import FlexKVImporter
from .flexkv_tracer import FlexKVTracerImporter
from .mooncake import MooncakeImporter
from .qwen_bailian import QwenBailianImporter


class Importer(Protocol):
    """Reads one trace format into our records (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def detect(self, obj: object) -> bool: ...

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[Record]]: ...


IMPORTERS: dict[str, Importer] = {}


def register(importer: Importer) -> None:
    IMPORTERS[importer.name] = importer


register(FlexKVImporter())
register(FlexKVTracerImporter())
register(QwenBailianImporter())  # before mooncake: its lines carry Mooncake's fields too
register(MooncakeImporter())
register(AzureImporter())


def get_importer(name: str) -> Importer:
    try:
        return IMPORTERS[name]
    except KeyError:
        raise TraceError(
            f"unknown trace format {name!r}; choose from: {', '.join(sorted(IMPORTERS))}"
        ) from None
