"""The public Mooncake trace format (kvcache-ai/Mooncake, FAST'25 traces).

One JSON object per line: ``timestamp`` (ms since the start), ``input_length`` and
``output_length`` (tokens), ``hash_ids`` (one id per block of ``block_size`` tokens,
chained: equal ids at position i mean equal prefixes up to block i; the last block may
be partial). Request ids are the 1-based line numbers. Every request is a GET.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from ..errors import TraceError
from ..fields import (
    as_seconds,
    block_size_or,
    check_key_count,
    count,
    keys,
    parse_object,
    required,
)
from ..files import PathLike, open_output
from ..records import GET, SCHEMA_VERSION, RequestRecord, TraceHeader

#: Tokens per hash id in the published Mooncake traces.
DEFAULT_BLOCK_SIZE = 512
SOURCE = "mooncake-import"


class MooncakeImporter:
    name = "mooncake"

    def detect(self, obj: object) -> bool:
        return (
            type(obj) is dict and "timestamp" in obj and "input_length" in obj and "hash_ids" in obj
        )

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[RequestRecord]]:
        block_size = check_block_size(block_size)
        header = TraceHeader(
            version=SCHEMA_VERSION,
            source=SOURCE,
            tokens_per_block=block_size,
            meta={"original_format": self.name, "original_file": os.path.basename(path)},
        )
        return header, _records(lines, path, block_size)


def check_block_size(block_size: int | None) -> int:
    return block_size_or(block_size, DEFAULT_BLOCK_SIZE)


def _records(
    lines: Iterator[tuple[int, str]], path: str, block_size: int
) -> Iterator[RequestRecord]:
    for lineno, text in lines:
        try:
            obj = parse_object(text)
            t = as_seconds(required(obj, "timestamp"), "timestamp", "milliseconds") / 1000.0
            num_tokens = count(obj, "input_length")
            hash_ids = keys(required(obj, "hash_ids"), "hash_ids")
            check_key_count(hash_ids, num_tokens, block_size, "hash_ids", "input_length")
            output_tokens = count(obj, "output_length", default=0)
        except TraceError as exc:
            raise exc.at(path, lineno) from None
        yield RequestRecord(t, GET, str(lineno), num_tokens, hash_ids, None, output_tokens)


def write_mooncake(
    requests: Iterable[RequestRecord], dst: PathLike, block_size: int = DEFAULT_BLOCK_SIZE
) -> int:
    """Write GET requests in Mooncake's format, in the order given; return how many.

    Times become milliseconds, written as integers when they are whole (within float
    rounding), so a Mooncake file read and written back keeps its timestamps. Request
    ids and namespaces are not representable and are dropped (namespaces are already
    folded into the keys). Output is gzip-compressed when ``dst`` ends with ``.gz``.
    """
    block_size = check_block_size(block_size)
    written = 0
    with open_output(dst) as out:
        for r in requests:
            if r.op != GET:
                raise ValueError(f"request {r.request_id}: Mooncake traces hold GET requests only")
            try:
                check_key_count(r.keys, r.num_tokens, block_size, "keys", "num_tokens")
            except TraceError as exc:
                raise ValueError(f"request {r.request_id}: {exc.reason}") from None
            ms: float | int = r.t * 1000.0
            whole = round(ms)
            if abs(ms - whole) < 1e-6:
                ms = whole
            line = {
                "timestamp": ms,
                "input_length": r.num_tokens,
                "output_length": r.output_tokens,
                "hash_ids": r.keys,
            }
            out.write(json.dumps(line).encode() + b"\n")
            written += 1
    return written
