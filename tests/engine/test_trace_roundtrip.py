"""Writing then reading our schema gives back equal records, byte-reproducibly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexkv_engine.core.paths import PATHS, TIERS
from flexkv_engine.trace import (
    SCHEMA_VERSION,
    OutcomeRecord,
    RequestRecord,
    TraceError,
    TraceHeader,
    TraceWriter,
    TransferRecord,
    load_requests,
    read_trace,
)

seconds = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | seconds | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
configs = st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=4)
request_ids = st.text(min_size=1, max_size=12)


@st.composite
def headers(draw: Any) -> TraceHeader:
    return TraceHeader(
        version=SCHEMA_VERSION,
        source=draw(st.sampled_from(["generator", "flexkv-run", "mooncake-import"])),
        tokens_per_block=draw(st.integers(1, 1024)),
        model_config=draw(configs),
        cache_config=draw(configs),
        meta=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
    )


@st.composite
def requests(draw: Any, tokens_per_block: int) -> RequestRecord:
    num_tokens = draw(st.integers(0, 30 * tokens_per_block))
    need = -(-num_tokens // tokens_per_block)
    return RequestRecord(
        t=draw(seconds),
        op=draw(st.sampled_from(["get", "put"])),
        request_id=draw(request_ids),
        num_tokens=num_tokens,
        keys=draw(st.lists(st.integers(0, 2**128 - 1), min_size=need, max_size=need)),
        namespace=draw(st.none() | st.text(max_size=8)),
        output_tokens=draw(st.integers(0, 10**8)),
    )


outcomes = st.builds(
    OutcomeRecord,
    request_id=request_ids,
    op=st.sampled_from(["get", "put"]),
    t=seconds,
    hit_blocks=st.fixed_dictionaries({tier: st.integers(0, 10**8) for tier in TIERS}),
    match_s=seconds,
    latency_s=seconds,
    ttft_s=st.none() | seconds,
    ok=st.booleans(),
)
transfers = st.builds(
    TransferRecord,
    request_id=request_ids,
    op_id=st.integers(0, 2**63 - 1),
    path=st.sampled_from(PATHS),
    num_bytes=st.integers(0, 2**48),
    num_blocks=st.integers(0, 10**8),
    t_submit=seconds,
    queue_s=seconds,
    transfer_s=seconds,
    deps=st.lists(st.integers(0, 1000), max_size=4).map(tuple),
)
pacings = st.fixed_dictionaries(
    {
        "type": st.just("pacing"),
        "speed": st.just("max") | st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
        "prefill": st.sampled_from(["none", "model"]),
    }
)


@st.composite
def traces(draw: Any) -> tuple[TraceHeader, list[Any]]:
    header = draw(headers())
    body = draw(st.lists(requests(header.tokens_per_block) | outcomes | transfers, max_size=12))
    pacing = draw(st.none() | pacings)
    return header, ([pacing] if pacing is not None else []) + body


def write(path: Path, header: TraceHeader, records: list[Any]) -> None:
    with TraceWriter(path, header) as writer:
        for record in records:
            writer.write(record)


@settings(max_examples=60, deadline=None)
@given(traces(), st.sampled_from(["t.jsonl", "t.jsonl.gz"]))
def test_write_then_read_gives_equal_records(
    trace: tuple[TraceHeader, list[Any]], name: str
) -> None:
    header, records = trace
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write(path, header, records)
        read = read_trace(path)
        assert read.format == "flexkv"
        assert read.header == header
        assert list(read) == records
        assert list(read) == records  # a Trace can be iterated again
        assert list(read.requests()) == [r for r in records if type(r) is RequestRecord]


@settings(max_examples=25, deadline=None)
@given(traces())
def test_output_is_byte_reproducible(trace: tuple[TraceHeader, list[Any]]) -> None:
    header, records = trace
    with tempfile.TemporaryDirectory() as tmp:
        outputs = []
        for name in ("a.jsonl.gz", "other-name.jsonl.gz", "a.jsonl", "b.jsonl"):
            write(Path(tmp) / name, header, records)
            outputs.append((Path(tmp) / name).read_bytes())
        assert outputs[0] == outputs[1] and outputs[2] == outputs[3]
        assert gzip.decompress(outputs[0]) == outputs[2]


def test_lines_are_compact_with_fixed_key_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    header = TraceHeader(SCHEMA_VERSION, "generator", 16)
    write(path, header, [RequestRecord(0, "get", "r1", 17, [5, 2**127])])
    lines = path.read_text().splitlines()
    assert lines[0] == (
        '{"type":"header","format":"flexkv-twin-trace","version":1,"source":"generator",'
        '"tokens_per_block":16,"model_config":null,"cache_config":null,"meta":{}}'
    )
    assert lines[1] == (
        '{"type":"request","t":0.0,"op":"get","id":"r1","tokens":17,'
        f'"keys":[5,{2**127}],"ns":null,"output_tokens":0}}'
    )


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    header = TraceHeader(SCHEMA_VERSION, "generator", 4)
    records = [RequestRecord(0.5, "get", "a", 5, [1, 2])]
    gz_named_plain = tmp_path / "plain.jsonl.gz"
    with TraceWriter(gz_named_plain, header, compress=False) as writer:
        writer.write(records[0])
    plain_named_gz = tmp_path / "packed.jsonl"
    with TraceWriter(plain_named_gz, header, compress=True) as writer:
        writer.write(records[0])
    assert plain_named_gz.read_bytes()[:2] == b"\x1f\x8b"
    for path in (gz_named_plain, plain_named_gz):
        assert load_requests(path) == (header, records)


def test_integer_times_are_written_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    header = TraceHeader(SCHEMA_VERSION, "generator", 16)
    write(path, header, [RequestRecord(3, "put", "x", 0, [])])
    assert '"t":3.0' in path.read_text()
    [record] = read_trace(path).requests()
    assert record.t == 3.0 and type(record.t) is float


def test_blank_lines_are_ignored_and_counted(tmp_path: Path) -> None:
    header = (
        '{"type":"header","format":"flexkv-twin-trace","version":1,"source":"g",'
        '"tokens_per_block":2}'
    )
    good = '{"type":"request","t":1,"op":"get","id":7,"tokens":3,"keys":[1,2]}'
    path = tmp_path / "t.jsonl"
    path.write_text(f"\n{header}\n\n  \n{good}\n\n{good.replace('[1,2]', '[1]')}\n")
    records = read_trace(path)
    assert records.header.meta == {} and records.header.model_config is None
    with pytest.raises(TraceError) as err:
        list(records)
    assert err.value.line == 7
    first = next(iter(records))
    assert first == RequestRecord(1.0, "get", "7", 3, [1, 2], None, 0)


def test_load_requests_sorts_stably_by_time(tmp_path: Path) -> None:
    header = TraceHeader(SCHEMA_VERSION, "generator", 1)
    stamps = [3.0, 1.0, 2.0, 1.0, 0.5]
    records = [RequestRecord(t, "get", str(i), 1, [i]) for i, t in enumerate(stamps)]
    path = tmp_path / "t.jsonl"
    write(path, header, records)
    _, by_time = load_requests(path)
    assert [r.request_id for r in by_time] == ["4", "1", "3", "2", "0"]
    _, in_file_order = load_requests(path, sort=False)
    assert in_file_order == records


def test_writer_refuses_records_it_could_not_read_back(tmp_path: Path) -> None:
    header = TraceHeader(SCHEMA_VERSION, "generator", 16)
    with TraceWriter(tmp_path / "t.jsonl", header) as writer:
        writer.write(RequestRecord(0.0, "get", "ok", 16, [1]))
        bad = [
            RequestRecord(0.0, "get", "short", 17, [1]),
            RequestRecord(float("nan"), "get", "nan", 0, []),
            RequestRecord(0.0, "fetch", "op", 0, []),
            RequestRecord(0.0, "get", "key", 1, [2**128]),
            TransferRecord("r", 0, "pcie", 1, 1, 0.0, 0.0, 0.0),
            OutcomeRecord("r", "get", 0.0, {"hbm": 1}, 0.0, 0.0),
            {"type": "pacing", "speed": 0, "prefill": "none"},
        ]
        for record in bad:
            with pytest.raises(TraceError) as err:
                writer.write(record)
            assert err.value.line == 3
        writer.write({"type": "pacing", "speed": 2, "prefill": "model"})
        with pytest.raises(TraceError, match="second pacing"):
            writer.write({"type": "pacing", "speed": "max", "prefill": "none"})
        with pytest.raises(TypeError):
            writer.write("not a record")  # type: ignore[arg-type]
    assert len(list(read_trace(tmp_path / "t.jsonl"))) == 2
    with pytest.raises(ValueError, match="version"):
        TraceWriter(tmp_path / "v.jsonl", TraceHeader(2, "generator", 16))
    with pytest.raises(TraceError, match="JSON"):
        TraceWriter(tmp_path / "m.jsonl", TraceHeader(1, "generator", 16, meta={"s": {1, 2}}))


def test_extension_records_pass_through(tmp_path: Path) -> None:
    header = TraceHeader(SCHEMA_VERSION, "flexkv-run", 16)
    extra = {"type": "x-gpu-sample", "t": 0.1, "util": 0.5}
    path = tmp_path / "t.jsonl"
    write(path, header, [extra, RequestRecord(0.2, "get", "a", 1, [9])])
    records = list(read_trace(path))
    assert records[0] == extra
    assert [r.request_id for r in read_trace(path).requests()] == ["a"]


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"type":"header","format":"flexkv-twin-trace","version":1,"source":"g",'
        '"tokens_per_block":8,"future":1}\n'
        '{"type":"request","t":0,"op":"get","id":"a","tokens":8,"keys":[3],"priority":"high"}\n'
    )
    assert load_requests(path)[1] == [RequestRecord(0.0, "get", "a", 8, [3])]


def test_package_imports_standard_library_only() -> None:
    code = (
        "import sys, flexkv_engine.trace; "
        "bad = [m for m in ('torch', 'numpy', 'simpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env_with_path())


def _env_with_path() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_json_of_written_lines_matches_the_schema_names(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    header = TraceHeader(SCHEMA_VERSION, "flexkv-run", 16)
    records: list[Any] = [
        OutcomeRecord("r17", "get", 0.25, {"cpu": 3, "ssd": 2}, 1.2e-05, 0.0031, None),
        TransferRecord("r17", 3, "ssd_read", 4194304, 2, 0.2501, 0.0001, 0.0008, (1,), 1),
    ]
    write(path, header, records)
    outcome, transfer = (json.loads(line) for line in path.read_text().splitlines()[1:])
    assert outcome == {
        "type": "outcome", "id": "r17", "op": "get", "t": 0.25,
        "hit_blocks": {"gpu": 0, "cpu": 3, "ssd": 2, "remote": 0},
        "match_s": 1.2e-05, "latency_s": 0.0031, "ttft_s": None, "ok": True,
    }  # fmt: skip
    assert transfer == {
        "type": "transfer", "id": "r17", "op_id": 3, "path": "ssd_read", "bytes": 4194304,
        "blocks": 2, "t_submit": 0.2501, "queue_s": 0.0001, "transfer_s": 0.0008, "deps": [1],
        "ios": 1,
    }  # fmt: skip
