"""The Mooncake importer and writer, format detection, conversion, and the public trace."""

from __future__ import annotations

import gzip
import itertools
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flexkv_engine
import flexkv_engine.trace
from flexkv_engine.trace import (
    IMPORTERS,
    SCHEMA_VERSION,
    RequestRecord,
    TraceError,
    TraceHeader,
    convert,
    detect_format,
    load_requests,
    public_traces_dir,
    read_trace,
    write_mooncake,
)

SMALL = """\
{"timestamp": 0, "input_length": 1000, "output_length": 20, "hash_ids": [0, 1]}
{"timestamp": 1500, "input_length": 1024, "output_length": 3, "hash_ids": [0, 2]}

{"timestamp": 250, "input_length": 1, "output_length": 0, "hash_ids": [7]}
{"timestamp": 250.5, "input_length": 0, "hash_ids": []}
"""


def test_small_mooncake_file_imports_exactly(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    path.write_text(SMALL)
    header, requests = load_requests(path, sort=False)
    assert header == TraceHeader(
        version=SCHEMA_VERSION,
        source="mooncake-import",
        tokens_per_block=512,
        meta={"original_format": "mooncake", "original_file": "small.jsonl"},
    )
    assert requests == [
        RequestRecord(0.0, "get", "1", 1000, [0, 1], None, 20),
        RequestRecord(1.5, "get", "2", 1024, [0, 2], None, 3),
        RequestRecord(0.25, "get", "4", 1, [7], None, 0),
        RequestRecord(0.2505, "get", "5", 0, [], None, 0),
    ]
    _, by_time = load_requests(path)
    assert [r.request_id for r in by_time] == ["1", "4", "5", "2"]
    assert read_trace(path).format == "mooncake"


def test_block_size_is_the_tokens_per_hash_id(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    path.write_text(
        '{"timestamp": 0, "input_length": 40, "output_length": 1, "hash_ids": [4, 5, 6]}\n'
    )
    header, [request] = load_requests(path, block_size=16)
    assert header.tokens_per_block == 16 and request.keys == [4, 5, 6]
    with pytest.raises(TraceError, match=r"needs ceil\(40/512\) = 1 blocks of 512 tokens"):
        load_requests(path)
    for bad in (0, -16, 2.5, True):
        with pytest.raises(ValueError, match="block_size"):
            read_trace(path, block_size=bad)  # type: ignore[arg-type]


GOOD = '{"timestamp": 10, "input_length": 600, "output_length": 5, "hash_ids": [3, 4]}'
BAD_MOONCAKE_LINES = [
    (GOOD.replace("[3, 4]", "[3, -4]"), "hash_ids must be a list of non-negative integers"),
    (GOOD.replace("[3, 4]", "[3, true]"), "hash_ids[1] is True"),
    (GOOD.replace("[3, 4]", "[3, 4.5]"), "hash_ids[1] is 4.5"),
    (GOOD.replace("[3, 4]", '[3, "4"]'), "hash_ids[1] is '4'"),
    (GOOD.replace("[3, 4]", "{}"), "hash_ids must be a list"),
    (GOOD.replace("[3, 4]", "[3]"), "hash_ids has 1 entries but input_length=600 needs"),
    (
        GOOD.replace('"timestamp": 10', '"timestamp": -1'),
        "timestamp must be a finite non-negative number of milliseconds",
    ),
    (GOOD.replace('"timestamp": 10', '"timestamp": "10"'), "timestamp must be"),
    (GOOD.replace('"timestamp": 10, ', ""), "missing required field 'timestamp'"),
    (
        GOOD.replace('"input_length": 600', '"input_length": -600'),
        "input_length must be an integer",
    ),
    (
        GOOD.replace('"input_length": 600', '"input_length": false'),
        "input_length must be an integer",
    ),
    (GOOD.replace('"input_length": 600, ', ""), "missing required field 'input_length'"),
    (
        GOOD.replace('"output_length": 5', '"output_length": 5.5'),
        "output_length must be an integer",
    ),
    (
        GOOD.replace('"output_length": 5', '"output_length": 100000001'),
        "output_length must be an integer",
    ),
    (GOOD[:-3], "malformed JSON"),
]


@pytest.mark.parametrize(("bad", "words"), BAD_MOONCAKE_LINES)
def test_bad_mooncake_line_is_reported(tmp_path: Path, bad: str, words: str) -> None:
    path = tmp_path / "conversation_trace.jsonl"
    path.write_text(f"{GOOD}\n{GOOD}\n{bad}\n{GOOD}\n")
    with pytest.raises(TraceError) as err:
        load_requests(path)
    assert err.value.line == 3
    assert words in err.value.reason
    assert str(err.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize(
    ("first_line", "name"),
    [
        ('{"type":"header","format":"flexkv-twin-trace","version":1}', "flexkv"),
        ('{"type":"header","format":"flexkv-twin-trace","version":99}', "flexkv"),
        ('{"type":"request","t":0,"op":"get"}', "flexkv"),  # header missing: still ours
        (GOOD, "mooncake"),
        (GOOD.encode(), "mooncake"),
        (json.loads(GOOD), "mooncake"),
        ({"type": "header", "format": "flexkv-twin-trace"}, "flexkv"),
    ],
)
def test_detect_format(first_line: object, name: str) -> None:
    assert detect_format(first_line) == name


@pytest.mark.parametrize(
    "first_line",
    ["", "TIMESTAMP,ContextTokens", "[1]", '{"timestamp": 0}', 42, None],
)
def test_detect_format_refuses_what_it_does_not_know(first_line: object) -> None:
    known = "azure, flexkv, flexkv-tracer, mooncake, qwen-bailian"
    with pytest.raises(TraceError, match=f"known formats: {known}"):
        detect_format(first_line)


def test_registry_order_and_public_names() -> None:
    # Detection takes the first match: a format whose lines carry another's fields first.
    assert list(IMPORTERS) == ["flexkv", "flexkv-tracer", "qwen-bailian", "mooncake", "azure"]
    assert flexkv_engine.trace.MAX_TOKENS_PER_BLOCK == 2**20


@pytest.mark.parametrize("name", sorted(IMPORTERS))
def test_registered_importer_contract(name: str) -> None:
    importer = IMPORTERS[name]
    assert importer.name == name
    for junk in ({}, [], "", "a,b,c", 0, None, {"type": None}, {"hash_ids": 5}):
        assert importer.detect(junk) is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(json_values)
def test_every_detector_answers_any_json_value_with_a_bool(value: object) -> None:
    for importer in IMPORTERS.values():
        assert importer.detect(value) in (True, False)


@st.composite
def mooncake_requests(draw: st.DrawFn) -> list[RequestRecord]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        tokens = draw(st.integers(0, 5000))
        need = -(-tokens // 512)
        ms = draw(st.integers(0, 4 * 10**9) | st.floats(0, 1e9).map(lambda x: x + 0.5))
        keys = draw(st.lists(st.integers(0, 2**128 - 1), min_size=need, max_size=need))
        out.append(
            RequestRecord(
                ms / 1000, "get", str(i + 1), tokens, keys, None, draw(st.integers(0, 10**6))
            )
        )
    return out


@settings(deadline=None)
@given(mooncake_requests())
def test_mooncake_write_then_read(requests: list[RequestRecord]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("m.jsonl", "m.jsonl.gz"):
            path = Path(tmp) / name
            assert write_mooncake(requests, path) == len(requests)
            if not requests:
                continue
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt") as f:
                first = json.loads(f.readline())
            if float(first["timestamp"]).is_integer():
                assert type(first["timestamp"]) is int
            assert load_requests(path, sort=False)[1] == requests


def test_write_mooncake_refuses_what_it_cannot_represent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="GET requests only"):
        write_mooncake([RequestRecord(0.0, "put", "p", 1, [1])], tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="needs ceil"):
        write_mooncake([RequestRecord(0.0, "get", "g", 600, [1])], tmp_path / "m.jsonl")


def test_convert_mooncake_to_our_schema(tmp_path: Path) -> None:
    src = tmp_path / "small.jsonl"
    src.write_text(SMALL)
    dst = tmp_path / "small.flexkv.jsonl.gz"
    assert convert(src, dst) == 4
    converted = read_trace(dst)
    assert converted.format == "flexkv"
    assert converted.header == read_trace(src).header
    assert list(converted) == list(read_trace(src))
    with pytest.raises(ValueError, match="overwrite its input"):
        convert(src, src)


def test_convert_leaves_nothing_behind_on_a_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(SMALL + GOOD.replace("[3, 4]", "[3]") + "\n")
    dst = tmp_path / "out.jsonl"
    with pytest.raises(TraceError) as err:
        convert(src, dst)
    assert err.value.line == 6
    assert list(tmp_path.iterdir()) == [src]


def test_public_traces_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEXKV_TRACES_DIR", str(tmp_path))
    assert public_traces_dir() == tmp_path
    monkeypatch.delenv("FLEXKV_TRACES_DIR")
    repo_root = Path(flexkv_engine.__file__).resolve().parents[2]
    assert public_traces_dir() == repo_root.parent / "shared" / "traces"


def conversation_trace() -> Path:
    path = public_traces_dir() / "conversation_trace.jsonl"
    if not path.is_file():
        pytest.skip(f"public Mooncake trace not found at {path} (set FLEXKV_TRACES_DIR)")
    return path


def test_public_conversation_trace() -> None:
    header, requests = load_requests(conversation_trace())
    assert header.tokens_per_block == 512
    assert len(requests) == 12_031
    assert all(a.t <= b.t for a, b in itertools.pairwise(requests))
    first = requests[0]
    assert first == RequestRecord(0.0, "get", "1", 6758, list(range(14)), None, 500)
    assert len({key for r in requests for key in r.keys}) == 182_790  # SOURCES.md
    assert all(len(r.keys) == -(-r.num_tokens // 512) for r in requests)


def test_public_conversation_trace_round_trips_byte_exactly(tmp_path: Path) -> None:
    path = conversation_trace()
    _, requests = load_requests(path, sort=False)
    copy = tmp_path / "copy.jsonl"
    write_mooncake(requests, copy)
    assert copy.read_bytes() == path.read_bytes()
    ours = tmp_path / "conversation.flexkv.jsonl.gz"
    assert convert(path, ours) == 12_031
    assert load_requests(ours, sort=False)[1] == requests
