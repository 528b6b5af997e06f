"""Every kind of bad input is a TraceError naming the file and line; nothing is skipped."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest

from flexkv_engine.trace import (
    SCHEMA_VERSION,
    RequestRecord,
    TraceError,
    TraceHeader,
    TraceWriter,
    load_requests,
    read_trace,
)

HEADER = (
    '{"type":"header","format":"flexkv-twin-trace","version":1,"source":"generator",'
    '"tokens_per_block":4}'
)
REQUEST = '{"type":"request","t":0.5,"op":"get","id":"r1","tokens":5,"keys":[1,2]}'
OUTCOME = '{"type":"outcome","id":"r1","op":"get","t":1,"hit_blocks":{},"match_s":0,"latency_s":0}'
TRANSFER = (
    '{"type":"transfer","id":"r1","op_id":0,"path":"h2d","bytes":1,"blocks":1,'
    '"t_submit":0,"queue_s":0,"transfer_s":0}'
)


def replace(line: str, old: str, new: str) -> str:
    assert old in line, (old, line)
    return line.replace(old, new)


def with_field(line: str, field: str) -> str:
    return f"{line[:-1]},{field}}}"


# (bad line placed after the header and one good request, words expected in the message)
BAD_BODY_LINES = [
    ('{"type":"request",', "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    (REQUEST + " 7", "malformed JSON"),
    (replace(REQUEST, ',"keys":[1,2]', ""), "missing required field 'keys'"),
    (replace(REQUEST, '"t":0.5,', ""), "missing required field 't'"),
    (replace(REQUEST, '"tokens":5', '"tokens":"5"'), "tokens must be an integer"),
    (replace(REQUEST, '"tokens":5', '"tokens":-5'), "tokens must be an integer"),
    (replace(REQUEST, '"tokens":5', '"tokens":true'), "tokens must be an integer"),
    (replace(REQUEST, '"tokens":5', '"tokens":5.0'), "tokens must be an integer"),
    (replace(REQUEST, '"tokens":5,"keys":[1,2]', '"tokens":400000001,"keys":[]'), "[0, 100000000]"),
    (replace(REQUEST, '"tokens":5', '"tokens":9'), "keys has 2 entries but tokens=9 needs"),
    (replace(REQUEST, "[1,2]", "[1,-2]"), "keys[1] is -2"),
    (replace(REQUEST, "[1,2]", "[1,2.0]"), "keys[1] is 2.0"),
    (replace(REQUEST, "[1,2]", "[true,2]"), "keys[0] is True"),
    (replace(REQUEST, "[1,2]", f"[1,{2**128}]"), "below 2**128"),
    (replace(REQUEST, "[1,2]", '"1,2"'), "keys must be a list"),
    (replace(REQUEST, '"t":0.5', '"t":-0.5'), "t must be a finite non-negative number"),
    (replace(REQUEST, '"t":0.5', '"t":NaN'), "t must be a finite non-negative number"),
    (replace(REQUEST, '"t":0.5', '"t":Infinity'), "t must be a finite non-negative number"),
    (replace(REQUEST, '"t":0.5', '"t":"0.5"'), "t must be a finite non-negative number"),
    (replace(REQUEST, '"op":"get"', '"op":"post"'), "op must be one of get, put"),
    (replace(REQUEST, '"id":"r1"', '"id":true'), "id must be a non-empty string or an integer"),
    (replace(REQUEST, '"id":"r1"', '"id":""'), "id must be a non-empty string"),
    (replace(REQUEST, '"id":"r1"', '"id":null'), "id must be a non-empty string"),
    (with_field(REQUEST, '"ns":5'), "ns must be a string or null"),
    (with_field(REQUEST, '"output_tokens":-1'), "output_tokens must be an integer"),
    ('{"type":"requests","t":0}', "unknown record type 'requests'"),
    ('{"t":0}', "unknown record type None"),
    (HEADER, "a header may appear only once"),
    (replace(OUTCOME, "{}", '{"hbm":1}'), "hit_blocks must be an object with keys among gpu, cpu"),
    (replace(OUTCOME, "{}", '{"cpu":-1}'), "cpu must be an integer"),
    (with_field(OUTCOME, '"ok":1'), "ok must be true or false"),
    (with_field(OUTCOME, '"ttft_s":-1'), "ttft_s must be a finite non-negative number"),
    (replace(OUTCOME, ',"latency_s":0', ""), "missing required field 'latency_s'"),
    (replace(TRANSFER, '"h2d"', '"pcie"'), "path must be one of h2d, d2h, ssd_read, ssd_write"),
    (
        replace(TRANSFER, '"bytes":1', f'"bytes":{2**48 + 1}'),
        f"bytes must be an integer in [0, {2**48}]",
    ),
    (with_field(TRANSFER, '"deps":[-1]'), "deps must be a list of non-negative integer op ids"),
    ('{"type":"pacing","speed":0,"prefill":"none"}', "pacing speed must be a positive number"),
    ('{"type":"pacing","speed":"fast","prefill":"none"}', "pacing speed must be a positive number"),
    ('{"type":"pacing","speed":1,"prefill":"guess"}', "prefill must be one of none, model"),
    ('{"type":"pacing","speed":1}', "missing required field 'prefill'"),
]


@pytest.mark.parametrize(("bad", "words"), BAD_BODY_LINES)
def test_bad_line_is_reported_with_its_line_number(tmp_path: Path, bad: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    # A blank line before the bad one: line numbers count physical lines.
    path.write_text(f"{HEADER}\n{REQUEST}\n\n{bad}\n{REQUEST}\n")
    trace = read_trace(path)
    records = iter(trace)
    assert next(records) == RequestRecord(0.5, "get", "r1", 5, [1, 2])
    with pytest.raises(TraceError) as err:
        next(records)
    assert err.value.path == str(path)
    assert err.value.line == 4
    assert words in err.value.reason
    assert str(err.value).startswith(f"{path}:4: ")


BAD_HEADERS = [
    (replace(HEADER, '"version":1', '"version":2'), "unsupported trace schema version 2"),
    (replace(HEADER, '"version":1', '"version":"1"'), "version must be an integer"),
    (replace(HEADER, '"version":1,', ""), "missing required field 'version'"),
    (replace(HEADER, '"tokens_per_block":4', '"tokens_per_block":0'), "at least 1"),
    (replace(HEADER, '"tokens_per_block":4', '"tokens_per_block":4.0'), "tokens_per_block must be"),
    (replace(HEADER, '"source":"generator"', '"source":""'), "source must be a non-empty string"),
    (with_field(HEADER, '"meta":[]'), "meta must be an object"),
    (with_field(HEADER, '"model_config":"llama"'), "model_config must be an object or null"),
    (REQUEST, "the first line must be the header record, found type 'request'"),
    ('{"type":"header","format":"flexkv-twin-trace"', "malformed JSON"),
]


@pytest.mark.parametrize(("header", "words"), BAD_HEADERS)
def test_bad_or_missing_header_is_reported_by_read_trace(
    tmp_path: Path, header: str, words: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"\n{header}\n{REQUEST}\n")
    with pytest.raises(TraceError) as err:
        read_trace(path, format="flexkv")
    assert err.value.line == 2
    assert words in err.value.reason


def test_header_of_an_unknown_version_is_detected_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.jsonl"
    path.write_text(replace(HEADER, '"version":1', '"version":7') + "\n")
    with pytest.raises(TraceError, match="version 7; this reader understands version 1 only"):
        read_trace(path)


def test_empty_or_blank_file(tmp_path: Path) -> None:
    for text in ("", "\n \n\t\n"):
        path = tmp_path / "empty.jsonl"
        path.write_text(text)
        with pytest.raises(TraceError, match="empty"):
            read_trace(path)


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"when": 0, "prompt": 5}\n')
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert err.value.line == 1
    known = "azure, flexkv, flexkv-tracer, mooncake, qwen-bailian"
    assert f"known formats: {known}" in str(err.value)
    with pytest.raises(TraceError, match=f"unknown trace format 'vllm'; choose from: {known}"):
        read_trace(path, format="vllm")


def test_block_size_must_agree_with_our_header(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(f"{HEADER}\n{REQUEST}\n")
    assert read_trace(path, block_size=4).header.tokens_per_block == 4
    with pytest.raises(TraceError, match="4-token blocks but block_size=16 was given"):
        read_trace(path, block_size=16)


def test_invalid_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(HEADER.encode() + b"\n" + b'{"type":"request","id":"\xff\xfe"}\n')
    with pytest.raises(TraceError, match="not UTF-8"):
        list(read_trace(path))


def _gzip_trace(path: Path, n: int) -> list[RequestRecord]:
    records = [
        RequestRecord(i * 0.01, "get", f"r{i}", 64, list(range(i, i + 16))) for i in range(n)
    ]
    with TraceWriter(path, TraceHeader(SCHEMA_VERSION, "generator", 4)) as writer:
        for record in records:
            writer.write(record)
    return records


def test_truncated_gzip_names_the_file_and_last_good_line(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl.gz"
    records = _gzip_trace(whole, 5000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    seen: list[object] = []
    stream = iter(read_trace(cut))
    with pytest.raises(TraceError) as err:
        seen.extend(stream)  # keeps the records read before the error
    assert "truncated or corrupt" in err.value.reason
    assert err.value.path == str(cut)
    assert err.value.line == len(seen) + 1  # the header is line 1
    assert 0 < len(seen) < len(records)
    assert seen == records[: len(seen)]
    assert f"after line {err.value.line}" in str(err.value)
    with pytest.raises(TraceError, match="truncated"):
        load_requests(cut)


def test_gzip_with_a_bad_checksum_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    _gzip_trace(path, 10)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="truncated or corrupt"):
        list(read_trace(path))


def test_gzip_truncated_inside_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(HEADER.encode())[:12])
    with pytest.raises(TraceError, match="truncated or corrupt after line 0"):
        read_trace(path)


def test_errors_keep_their_fields_when_pickled() -> None:
    err = TraceError("hash_ids must be a list", "trace.jsonl", 17)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.path, copy.line, str(copy)) == (
        err.reason, "trace.jsonl", 17, "trace.jsonl:17: hash_ids must be a list",
    )  # fmt: skip
    assert isinstance(copy, ValueError)
