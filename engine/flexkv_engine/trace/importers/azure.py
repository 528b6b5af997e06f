"""The Azure LLM inference traces (``AzureLLMInferenceTrace_{conv,code}.csv``).

CSV with the header ``TIMESTAMP,ContextTokens,GeneratedTokens`` and one row per request:
an arrival time such as ``2023-11-16 18:15:46.6805900`` (no time zone, up to 9
fractional digits) and two token counts. The traces hold no prefix information, so the
block keys come from a synthetic prefix model (:mod:`.prefix_models`), named with its
seed and parameters in the header's ``meta``. Times are seconds since the first row;
request ids are line numbers; every request is a GET.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from itertools import chain
from typing import Any

from ..errors import TraceError
from ..fields import MAX_COUNT, block_size_or
from ..files import PathLike, numbered_lines
from ..records import GET, SCHEMA_VERSION, RequestRecord, TraceHeader
from .prefix_models import SystemPrompts, make_model

HEADER_LINE = "TIMESTAMP,ContextTokens,GeneratedTokens"
#: Tokens per key of an imported Azure trace unless the caller asks otherwise.
DEFAULT_BLOCK_SIZE = 16
DEFAULT_MODEL = "system-prompts"
DEFAULT_SEED = 0
SOURCE = "azure-import"

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?")
_COUNT = re.compile(r"\d{1,9}")
_NS = 10**9


class AzureImporter:
    name = "azure"

    def detect(self, obj: object) -> bool:
        return type(obj) is str and obj.strip().lstrip("\ufeff") == HEADER_LINE

    def read(
        self, lines: Iterator[tuple[int, str]], path: str, block_size: int | None
    ) -> tuple[TraceHeader, Iterator[RequestRecord]]:
        block_size = block_size_or(block_size, DEFAULT_BLOCK_SIZE)
        model = make_model(DEFAULT_MODEL, block_size, DEFAULT_SEED, {})
        return read_azure(lines, path, block_size, model)


def import_azure(
    path: PathLike,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    model: str = DEFAULT_MODEL,
    seed: int = DEFAULT_SEED,
    **params: Any,
) -> tuple[TraceHeader, list[RequestRecord]]:
    """Read an Azure CSV trace with a chosen prefix model; the header and all requests.

    ``model`` is ``"system-prompts"`` or ``"multi-turn"``; ``params`` override the
    model's parameters (``num_prompts``, ``zipf_s``, ``prompt_tokens_min``,
    ``prompt_tokens_max``; for ``multi-turn`` also ``continue_prob`` and
    ``open_conversations``). Equal arguments give equal keys. Requests are in file
    order. Bad arguments raise ValueError; bad rows raise :class:`TraceError`.
    """
    block_size = block_size_or(block_size, DEFAULT_BLOCK_SIZE)
    prefix_model = make_model(model, block_size, seed, params)
    lines = numbered_lines(path)
    try:
        header, records = read_azure(lines, os.fspath(path), block_size, prefix_model)
        return header, list(records)
    finally:
        lines.close()


def read_azure(
    lines: Iterator[tuple[int, str]], path: str, block_size: int, model: SystemPrompts
) -> tuple[TraceHeader, Iterator[RequestRecord]]:
    """Header and lazy requests of the CSV ``lines`` (the model must be fresh)."""
    first = next(lines, None)
    if first is None:
        raise TraceError(f"the file is empty; expected the header line {HEADER_LINE}", path)
    lineno, text = first
    if text.strip().lstrip("\ufeff") != HEADER_LINE:
        raise TraceError(
            f"expected the header line {HEADER_LINE}, got {text.strip()!r}", path, lineno
        )
    meta: dict[str, Any] = {
        "original_format": AzureImporter.name,
        "original_file": os.path.basename(path),
        "prefix_model": model.describe(),
    }
    row = next(lines, None)
    if row is not None:  # the start time goes into the header
        try:
            meta["start_time"] = stamp = _fields(row[1])[0]
            parse_time(stamp)
        except TraceError as exc:
            raise exc.at(path, row[0]) from None
        lines = chain([row], lines)
    header = TraceHeader(SCHEMA_VERSION, SOURCE, block_size, meta=meta)
    return header, _records(lines, path, block_size, model)


def _fields(text: str) -> list[str]:
    fields = text.rstrip("\r\n").split(",")
    if len(fields) != 3:
        raise TraceError(f"expected 3 comma-separated fields ({HEADER_LINE}), got {len(fields)}")
    return [field.strip() for field in fields]


def parse_time(text: str) -> int:
    """Nanoseconds since 0001-01-01 of a ``YYYY-MM-DD HH:MM:SS[.fraction]`` time."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise TraceError(f"TIMESTAMP must look like 2023-11-16 18:15:46.6805900, got {text!r}")
    year, month, day, hour, minute, second = map(int, match.groups()[:6])
    try:
        days = datetime.date(year, month, day).toordinal()
    except ValueError as exc:
        raise TraceError(f"TIMESTAMP {text!r} is not a valid date: {exc}") from None
    if hour > 23 or minute > 59 or second > 59:
        raise TraceError(f"TIMESTAMP {text!r} is not a valid time of day")
    whole = ((days * 24 + hour) * 60 + minute) * 60 + second
    return whole * _NS + int((match.group(7) or "").ljust(9, "0"))


def _count(text: str, name: str) -> int:
    if _COUNT.fullmatch(text) is None or int(text) > MAX_COUNT:
        raise TraceError(f"{name} must be an integer in [0, {MAX_COUNT}], got {text!r}")
    return int(text)


def _records(
    lines: Iterator[tuple[int, str]], path: str, block_size: int, model: SystemPrompts
) -> Iterator[RequestRecord]:
    start: int | None = None
    start_text = ""
    for lineno, text in lines:
        try:
            stamp, context, generated = _fields(text)
            now = parse_time(stamp)
            if start is None:
                start, start_text = now, stamp
            elif now < start:
                raise TraceError(f"TIMESTAMP {stamp} is earlier than the first row's {start_text}")
            num_tokens = _count(context, "ContextTokens")
            output_tokens = _count(generated, "GeneratedTokens")
        except TraceError as exc:
            raise exc.at(path, lineno) from None
        keys = model.keys(lineno, num_tokens, output_tokens)
        yield RequestRecord(
            (now - start) / _NS, GET, str(lineno), num_tokens, keys, None, output_tokens
        )
