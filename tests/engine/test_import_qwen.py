"""The Qwen-Bailian importer: exact records, detection, errors with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexkv_engine.trace import (
    SCHEMA_VERSION,
    RequestRecord,
    TraceError,
    TraceHeader,
    convert,
    detect_format,
    load_requests,
    read_trace,
)

SMALL = """\
{"chat_id": 159, "parent_chat_id": -1, "timestamp": 61.114, "input_length": 40, "output_length": 132, "type": "text", "turn": 1, "hash_ids": [11, 12, 13]}
{"chat_id": 160, "parent_chat_id": 159, "timestamp": 70.5, "input_length": 48, "output_length": 20, "type": "search", "turn": 2, "hash_ids": [11, 12, 14]}

{"parent_chat_id": "x9", "timestamp": 3, "input_length": 0, "hash_ids": []}
{"chat_id": "c-7", "parent_chat_id": null, "timestamp": 0.25, "input_length": 17, "output_length": 0, "type": null, "turn": null, "hash_ids": [18446744073709551615, 0]}
"""  # noqa: E501


def chat(rid: str, parent: str | None, turn: int | None, kind: str | None) -> dict[str, object]:
    return {"type": "x-chat", "id": rid, "parent": parent, "turn": turn, "kind": kind}


def test_small_qwen_file_imports_exactly(tmp_path: Path) -> None:
    path = tmp_path / "qwen_traceA_blksz_16.jsonl"
    path.write_text(SMALL)
    trace = read_trace(path)
    assert trace.format == "qwen-bailian"
    assert trace.header == TraceHeader(
        version=SCHEMA_VERSION,
        source="qwen-bailian-import",
        tokens_per_block=16,
        meta={"original_format": "qwen-bailian", "original_file": "qwen_traceA_blksz_16.jsonl"},
    )
    assert list(trace) == [
        RequestRecord(61.114, "get", "159", 40, [11, 12, 13], None, 132),
        chat("159", None, 1, "text"),
        RequestRecord(70.5, "get", "160", 48, [11, 12, 14], None, 20),
        chat("160", "159", 2, "search"),
        RequestRecord(3.0, "get", "4", 0, [], None, 0),
        chat("4", "x9", None, None),
        RequestRecord(0.25, "get", "c-7", 17, [2**64 - 1, 0], None, 0),
        chat("c-7", None, None, None),
    ]
    _, by_time = load_requests(path)
    assert [r.request_id for r in by_time] == ["c-7", "4", "159", "160"]


def test_block_size_can_be_given(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 40,'
        ' "output_length": 1, "hash_ids": [5]}\n'
    )
    header, [request] = load_requests(path, block_size=64)
    assert header.tokens_per_block == 64 and request.keys == [5]
    with pytest.raises(TraceError, match=r"needs ceil\(40/16\) = 3 blocks of 16 tokens"):
        load_requests(path)


@pytest.mark.parametrize(
    ("first_line", "name"),
    [
        ({"chat_id": 1, "hash_ids": []}, "qwen-bailian"),
        ({"parent_chat_id": -1, "hash_ids": [1]}, "qwen-bailian"),
        ({"chat_id": 1, "timestamp": 0, "input_length": 1, "hash_ids": [1]}, "qwen-bailian"),
        ({"timestamp": 0, "input_length": 1, "hash_ids": [1]}, "mooncake"),
    ],
)
def test_detect_qwen_before_mooncake(first_line: dict[str, object], name: str) -> None:
    assert detect_format(first_line) == name
    assert detect_format(json.dumps(first_line)) == name


GOOD = (
    '{"chat_id": 5, "parent_chat_id": 4, "timestamp": 1.5, "input_length": 20,'
    ' "output_length": 3, "type": "text", "turn": 2, "hash_ids": [1, 2]}'
)
BAD_LINES = [
    (GOOD.replace('"timestamp": 1.5', '"timestamp": -1'), "timestamp must be a finite"),
    (GOOD.replace('"timestamp": 1.5', '"timestamp": "1.5"'), "timestamp must be"),
    (GOOD.replace('"timestamp": 1.5, ', ""), "missing required field 'timestamp'"),
    (GOOD.replace('"input_length": 20, ', ""), "missing required field 'input_length'"),
    (GOOD.replace("[1, 2]", "[1]"), "hash_ids has 1 entries but input_length=20 needs"),
    (GOOD.replace("[1, 2]", "[1, -2]"), "hash_ids[1] is -2"),
    (GOOD.replace('"output_length": 3', '"output_length": 3.5'), "output_length must be"),
    (GOOD.replace('"chat_id": 5', '"chat_id": true'), "chat_id must be an integer or"),
    (GOOD.replace('"chat_id": 5', '"chat_id": ""'), "chat_id must be an integer or"),
    (GOOD.replace('"chat_id": 5', '"chat_id": 5.0'), "chat_id must be an integer or"),
    (GOOD.replace('"parent_chat_id": 4', '"parent_chat_id": [4]'), "parent_chat_id must be"),
    (GOOD.replace('"turn": 2', '"turn": -1'), "turn must be an integer in"),
    (GOOD.replace('"turn": 2', '"turn": "2"'), "turn must be an integer in"),
    (GOOD.replace('"type": "text"', '"type": 3'), "type must be a string or null"),
    (GOOD[:-1], "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
]


@pytest.mark.parametrize(("bad", "words"), BAD_LINES)
def test_bad_qwen_line_is_reported_with_file_and_line(tmp_path: Path, bad: str, words: str) -> None:
    path = tmp_path / "qwen_traceB_blksz_16.jsonl"
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n")
    with pytest.raises(TraceError) as err:
        list(read_trace(path))
    assert err.value.line == 3
    assert words in err.value.reason
    assert str(err.value).startswith(f"{path}:3: ")


def test_convert_keeps_the_conversation_fields(tmp_path: Path) -> None:
    src = tmp_path / "q.jsonl"
    src.write_text(SMALL)
    dst = tmp_path / "q.flexkv.jsonl.gz"
    assert convert(src, dst) == 8
    converted = read_trace(dst)
    assert converted.format == "flexkv"
    assert converted.header == read_trace(src).header
    assert list(converted) == list(read_trace(src))
