"""Importer for our own schema (``traces/FORMAT.md``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import TraceError
from ..fields import parse_object
from ..records import FORMAT_NAME, Record, TraceHeader
from ..schema import PACING, RECORD_TYPES, decode_header, decode_record


class FlexKVImporter:
    name = "flexkv"

    def detect(self, obj: object) -> bool:
        # A file of our records whose header is missing is still ours: reading it then
        # reports the missing header instead of "unknown format".
        if type(obj) is not dict:
            return False
        return obj.get("format") == FORMAT_NAME or (
            obj.get("type") in RECORD_TYPES and "hash_ids" not in obj
        )

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[Record]]:
        first = next(lines, None)
        if first is None:
            raise TraceError("the trace is empty; expected a header line", path)
        lineno, text = first
        try:
            header = decode_header(parse_object(text))
        except TraceError as exc:
            raise exc.at(path, lineno) from None
        if block_size is not None and block_size != header.tokens_per_block:
            raise TraceError(
                f"the trace records {header.tokens_per_block}-token blocks but block_size="
                f"{block_size} was given; block_size is for formats without a header "
                "(to coarsen the keys, set a larger tokens_per_block in the config)",
                path,
            )
        return header, _records(lines, path, header.tokens_per_block)


def _records(lines: Iterator[tuple[int, str]], path: str, tokens_per_block: int) -> Iterator[Any]:
    pacing_line = 0
    for lineno, text in lines:
        try:
            record = decode_record(parse_object(text), tokens_per_block)
            if type(record) is dict and record["type"] == PACING:
                if pacing_line:
                    raise TraceError(f"a second pacing record (the first is on line {pacing_line})")
                pacing_line = lineno
        except TraceError as exc:
            raise exc.at(path, lineno) from None
        yield record
