"""The Alibaba Qwen-Bailian usage traces (``qwen_trace{A,B}_blksz_16.jsonl``).

One JSON object per line, Mooncake's fields plus the conversation structure:
``chat_id`` (request id), ``parent_chat_id`` (the previous turn's ``chat_id``; -1 for the
first turn), ``turn`` (1 for the first turn), ``type`` (workload tag: text, search, image,
file), ``timestamp`` (arrival, in SECONDS since the start), ``input_length`` and
``output_length`` (tokens) and ``hash_ids`` (one id per block of 16 tokens, taken to be
chained like Mooncake's: equal ids at position i mean equal prefixes up to block i).

Each line becomes a GET request (id = ``chat_id``, else the line number) followed by an
``x-chat`` extension record carrying the conversation fields, so they survive a
conversion to our schema and stay out of :class:`RequestRecord`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..errors import TraceError
from ..fields import (
    block_size_or,
    check_key_count,
    count,
    keys,
    optional_str,
    parse_object,
    required,
    seconds,
)
from ..records import GET, SCHEMA_VERSION, Record, RequestRecord, TraceHeader

#: Tokens per hash id in the published traces (``blksz_16``).
DEFAULT_BLOCK_SIZE = 16
SOURCE = "qwen-bailian-import"
#: Extension record that carries a request's conversation fields.
CHAT_RECORD = "x-chat"
#: ``parent_chat_id`` of a conversation's first turn.
NO_PARENT = -1
_NO_PARENT = str(NO_PARENT)


class QwenBailianImporter:
    name = "qwen-bailian"

    def detect(self, obj: object) -> bool:
        return (
            type(obj) is dict
            and "hash_ids" in obj
            and ("chat_id" in obj or "parent_chat_id" in obj)
        )

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[Record]]:
        block_size = block_size_or(block_size, DEFAULT_BLOCK_SIZE)
        header = TraceHeader(
            version=SCHEMA_VERSION,
            source=SOURCE,
            tokens_per_block=block_size,
            meta={"original_format": self.name, "original_file": os.path.basename(path)},
        )
        return header, _records(lines, path, block_size)


def _chat_ref(obj: dict[str, Any], name: str) -> str | None:
    """A chat id as a string (an integer or a non-empty string); absent or null: None."""
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    if type(value) is str and value:
        return value
    raise TraceError(f"{name} must be an integer or a non-empty string, got {value!r}")


def _records(lines: Iterator[tuple[int, str]], path: str, block_size: int) -> Iterator[Record]:
    for lineno, text in lines:
        try:
            obj = parse_object(text)
            t = seconds(obj, "timestamp")
            num_tokens = count(obj, "input_length")
            hash_ids = keys(required(obj, "hash_ids"), "hash_ids")
            check_key_count(hash_ids, num_tokens, block_size, "hash_ids", "input_length")
            output_tokens = count(obj, "output_length", default=0)
            chat_id = _chat_ref(obj, "chat_id")
            parent = _chat_ref(obj, "parent_chat_id")
            if parent == _NO_PARENT:
                parent = None
            turn = None if obj.get("turn") is None else count(obj, "turn")
            kind = optional_str(obj, "type")
        except TraceError as exc:
            raise exc.at(path, lineno) from None
        rid = str(lineno) if chat_id is None else chat_id
        yield RequestRecord(t, GET, rid, num_tokens, hash_ids, None, output_tokens)
        yield {"type": CHAT_RECORD, "id": rid, "parent": parent, "turn": turn, "kind": kind}
