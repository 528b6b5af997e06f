"""The examples in traces/FORMAT.md are valid traces, so the document and code agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flexkv_engine.trace import (
    OutcomeRecord,
    RequestRecord,
    TraceHeader,
    TransferRecord,
    detect_format,
    load_requests,
    read_trace,
)

FORMAT_MD = Path(__file__).resolve().parents[2] / "traces" / "FORMAT.md"
HEADER_16 = (
    '{"type":"header","format":"flexkv-twin-trace","version":1,"source":"doc",'
    '"tokens_per_block":16}'
)


def blocks(language: str) -> list[str]:
    if not FORMAT_MD.is_file():
        pytest.skip(f"{FORMAT_MD} not found")
    return re.findall(rf"```{language}\n(.*?)```", FORMAT_MD.read_text(), re.DOTALL)


def test_every_single_line_example_is_a_valid_record(tmp_path: Path) -> None:
    examples = blocks("json")
    assert len(examples) == 6
    kinds = set()
    for i, example in enumerate(examples):
        path = tmp_path / f"example{i}.jsonl"
        header_first = example.startswith('{"type":"header"')
        path.write_text(example if header_first else f"{HEADER_16}\n{example}")
        trace = read_trace(path)
        kinds.add(type(trace.header))
        kinds.update(type(record) for record in trace)
    assert kinds == {TraceHeader, RequestRecord, OutcomeRecord, TransferRecord, dict}


def test_complete_example_reads_as_documented(tmp_path: Path) -> None:
    [example] = blocks("jsonl")
    path = tmp_path / "example.jsonl"
    path.write_text(example)
    records = list(read_trace(path))
    assert [type(r).__name__ for r in records] == [
        "dict", "RequestRecord", "OutcomeRecord", "RequestRecord", "TransferRecord",
        "OutcomeRecord", "RequestRecord",
    ]  # fmt: skip
    header, requests = load_requests(path)
    assert header.cache_config == {"num_cpu_blocks": 4096, "enable_ssd": True}
    r1, r2, r3 = requests
    assert r1.keys[:2] == r2.keys[:2] and r1.keys[2] != r2.keys[2]
    assert (r3.op, r3.namespace) == ("put", "tenant-b")


@pytest.mark.parametrize("name", ["qwen-bailian", "azure", "flexkv-tracer"])
def test_examples_of_imported_formats_read_as_their_format(tmp_path: Path, name: str) -> None:
    [example] = blocks(name)
    path = tmp_path / f"example.{name}"
    path.write_text(example)
    assert detect_format(example.splitlines()[0]) == name
    trace = read_trace(path)
    records = list(trace)
    requests = [r for r in records if type(r) is RequestRecord]
    assert len(requests) == 2
    assert all(type(r) is dict and r["type"].startswith("x-") for r in records if r not in requests)
