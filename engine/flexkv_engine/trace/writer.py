"""Writing traces in our schema: compact, byte-reproducible JSON lines."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from .errors import TraceError
from .files import PathLike, open_output
from .records import SCHEMA_VERSION, Record, TraceHeader
from .schema import PACING, decode_header, decode_record, encode_header, encode_record

# Compact separators; floats go through float.__repr__, which round-trips exactly.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class TraceWriter:
    """Writes a header, then any records, one JSON object per line.

    Gzip-compressed when the path ends with ``.gz`` (or ``compress=True``), with a
    zeroed gzip timestamp, so equal records always produce equal bytes. Every record is
    checked with the same decoder the reader uses, so what is written can be read back;
    a bad record raises :class:`TraceError` naming the output line it would have had.
    """

    def __init__(
        self, path: PathLike, header: TraceHeader, *, compress: bool | None = None
    ) -> None:
        if header.version != SCHEMA_VERSION:
            raise ValueError(
                f"this writer writes schema version {SCHEMA_VERSION}, not {header.version}"
            )
        self._path = path
        self._tokens_per_block = header.tokens_per_block
        self._line = 0
        self._pacing_line = 0
        encoded = encode_header(header)
        self._check(decode_header, encoded)
        self._out = open_output(path, compress)
        self._emit(encoded)

    def write(self, record: Record) -> None:
        """Append one record (request, outcome, transfer, or a pacing/extension dict)."""
        encoded = encode_record(record)
        self._check(lambda obj: decode_record(obj, self._tokens_per_block), encoded)
        if encoded["type"] == PACING:
            if self._pacing_line:
                raise TraceError(
                    f"a second pacing record (the first is on line {self._pacing_line})",
                    self._path,
                    self._line + 1,
                )
            self._pacing_line = self._line + 1
        self._emit(encoded)

    def _check(self, decode: Any, encoded: dict[str, Any]) -> None:
        try:
            decode(encoded)
        except TraceError as exc:
            raise exc.at(self._path, self._line + 1) from None

    def _emit(self, encoded: dict[str, Any]) -> None:
        try:
            text = _encode(encoded)
        except (TypeError, ValueError) as exc:  # e.g. a non-JSON value in meta
            raise TraceError(f"cannot encode as JSON: {exc}", self._path, self._line + 1) from None
        self._out.write(text.encode("utf-8") + b"\n")
        self._line += 1

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
