"""The Azure CSV importer and its synthetic prefix models."""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import struct
from pathlib import Path

import pytest

from flexkv_engine.core.keys import namespace_root
from flexkv_engine.trace import (
    PREFIX_MODELS,
    SCHEMA_VERSION,
    RequestRecord,
    TraceError,
    TraceHeader,
    convert,
    detect_format,
    import_azure,
    public_traces_dir,
    read_trace,
)

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
SMALL = (
    f"{HEADER}\r\n"
    "2023-11-16 18:15:46.6805900,40,44\r\n"
    "2023-11-16 18:15:50.9951690,20,109\r\n"
    "\r\n"
    "2023-11-16 18:15:50.9951690,0,7\r\n"
    "2023-11-17 00:00:00,32,1"
)
ROWS = 1 << 40
ONE_PROMPT = {"num_prompts": 1, "prompt_tokens_min": 32, "prompt_tokens_max": 32}


def chain(*blocks: tuple[tuple[int, int, int], ...]) -> list[int]:
    """Keys as documented: blake2b-128 of the previous key and each block's pieces."""
    prev = namespace_root("flexkv-twin:synthetic-prefix").to_bytes(16, "little")
    keys = []
    for pieces in blocks:
        flat = [x for piece in pieces for x in piece]
        payload = prev + struct.pack(f"<{len(flat)}q", *flat)
        prev = hashlib.blake2b(payload, digest_size=16).digest()
        keys.append(int.from_bytes(prev, "little"))
    return keys


def test_small_azure_file_imports_exactly(tmp_path: Path) -> None:
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    path.write_bytes(SMALL.encode())
    header, requests = import_azure(path, block_size=16, seed=3, **ONE_PROMPT)
    model = {"name": "system-prompts", "seed": 3, "zipf_s": 1.0, **ONE_PROMPT}
    assert header == TraceHeader(
        version=SCHEMA_VERSION,
        source="azure-import",
        tokens_per_block=16,
        meta={
            "original_format": "azure",
            "original_file": "AzureLLMInferenceTrace_conv.csv",
            "prefix_model": model,
            "start_time": "2023-11-16 18:15:46.6805900",
        },
    )
    prompt = ((0, 0, 16),), ((0, 16, 32),)
    assert requests == [
        RequestRecord(0.0, "get", "2", 40, chain(*prompt, ((ROWS + 4, 0, 8),)), None, 44),
        RequestRecord(4.314579, "get", "3", 20, chain(prompt[0], ((0, 16, 20),)), None, 109),
        RequestRecord(4.314579, "get", "5", 0, [], None, 7),
        RequestRecord(20653.31941, "get", "6", 32, chain(*prompt), None, 1),
    ]


def test_registry_reads_azure_with_the_default_model(tmp_path: Path) -> None:
    path = tmp_path / "code.csv"
    path.write_text(SMALL)
    assert detect_format(HEADER) == "azure"
    assert detect_format("\ufeff" + HEADER + "\r\n") == "azure"
    trace = read_trace(path)
    assert trace.format == "azure"
    assert trace.header.tokens_per_block == 16
    assert trace.header.meta["prefix_model"] == {
        "name": "system-prompts",
        "seed": 0,
        **PREFIX_MODELS["system-prompts"].DEFAULTS,
    }
    assert list(trace) == import_azure(path)[1]
    assert read_trace(path, block_size=8).header.tokens_per_block == 8
    dst = tmp_path / "code.flexkv.jsonl"
    assert convert(path, dst) == 4
    assert list(read_trace(dst)) == list(trace)


def test_multi_turn_continues_a_conversation(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(f"{HEADER}\n2023-11-16 18:00:00,20,5\n2023-11-16 18:00:01,40,0\n")
    params = {"num_prompts": 0, "continue_prob": 1.0, "open_conversations": 1}
    _, (a, b) = import_azure(path, model="multi-turn", **params)
    first, second = ROWS + 4, ROWS + 6  # rows on lines 2 and 3
    assert a.keys == chain(((first, 0, 16),), ((first, 16, 20),))
    assert b.keys == chain(
        ((first, 0, 16),),
        ((first, 16, 20), (first + 1, 0, 5), (second, 0, 7)),
        ((second, 7, 15),),
    )


def test_models_are_deterministic_and_follow_the_seed(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    rows = [f"2023-11-16 18:00:{i // 10:02d}.{i % 10},{100 + 37 * i % 900},{i}" for i in range(60)]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    for model in PREFIX_MODELS:
        a = import_azure(path, model=model)[1]
        assert a == import_azure(path, model=model)[1]
        assert a != import_azure(path, model=model, seed=1)[1]
        assert [(r.t, r.num_tokens, r.output_tokens) for r in a] == [
            (i // 10 + (i % 10) / 10, 100 + 37 * i % 900, i) for i in range(60)
        ]
        firsts = {r.keys[0] for r in a}
        assert 1 < len(firsts) < 60  # popular prompts are shared, not all the same
    unique = import_azure(path, num_prompts=0)[1]
    assert len({k for r in unique for k in r.keys}) == sum(len(r.keys) for r in unique)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"model": "zipf"}, "unknown prefix model 'zipf'"),
        ({"num_promts": 3}, "unknown parameter(s) num_promts"),
        ({"continue_prob": 0.5}, "unknown parameter(s) continue_prob"),
        ({"model": "multi-turn", "continue_prob": 1.5}, "continue_prob must be a number"),
        ({"num_prompts": -1}, "num_prompts must be an integer"),
        ({"zipf_s": "1"}, "zipf_s must be a number"),
        ({"prompt_tokens_min": 50, "prompt_tokens_max": 10}, "prompt_tokens_max must be"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"block_size": 0}, "block_size must be an integer"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object], words: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(SMALL)
    with pytest.raises(ValueError, match=re.escape(words)):
        import_azure(path, **kwargs)  # type: ignore[arg-type]


GOOD = "2023-11-16 18:15:46.6805900,374,44"
BAD_ROWS = [
    ("2023-11-16 18:15:46.6805900,374", "expected 3 comma-separated fields"),
    ("2023-11-16 18:15:46.6805900,374,44,1", "expected 3 comma-separated fields"),
    ("2023/11/16 18:15:46,374,44", "TIMESTAMP must look like"),
    ("2023-11-16 18:15:46.1234567890,374,44", "TIMESTAMP must look like"),
    ("2023-02-30 18:15:46,374,44", "is not a valid date"),
    ("2023-11-16 24:00:00,374,44", "is not a valid time of day"),
    ("2023-11-16 18:15:45.9,374,44", "is earlier than the first row's"),
    ("2023-11-16 18:15:46.6805900,-374,44", "ContextTokens must be an integer"),
    ("2023-11-16 18:15:46.6805900,374.0,44", "ContextTokens must be an integer"),
    ("2023-11-16 18:15:46.6805900,374,", "GeneratedTokens must be an integer"),
    ("2023-11-16 18:15:46.6805900,374,100000001", "GeneratedTokens must be an integer"),
]


@pytest.mark.parametrize(("bad", "words"), BAD_ROWS)
def test_bad_row_is_reported_with_file_and_line(tmp_path: Path, bad: str, words: str) -> None:
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n\n{bad}\n{GOOD}\n")
    with pytest.raises(TraceError) as err:
        import_azure(path)
    assert err.value.line == 4
    assert words in err.value.reason
    assert str(err.value).startswith(f"{path}:4: ")


def test_bad_first_row_and_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(f"{HEADER}\n2023-11-16,1,1\n")
    with pytest.raises(TraceError, match=r"a\.csv:2: TIMESTAMP must look like"):
        read_trace(path)
    path.write_text(f"TIMESTAMP,Context,Generated\n{GOOD}\n")
    with pytest.raises(TraceError, match=r"a\.csv:1: expected the header line"):
        read_trace(path, format="azure")
    path.write_text(f"{HEADER}\n")
    assert read_trace(path).header.meta.get("start_time") is None
    assert list(read_trace(path)) == []


def public(name: str) -> tuple[Path, list[list[str]], list[RequestRecord]]:
    path = public_traces_dir() / name
    if not path.is_file():
        pytest.skip(f"public Azure trace not found at {path} (set FLEXKV_TRACES_DIR)")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return path, rows, list(read_trace(path))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "count"),
    [("AzureLLMInferenceTrace_conv.csv", 19_366), ("AzureLLMInferenceTrace_code.csv", 8_819)],
)
def test_public_azure_traces(name: str, count: int) -> None:
    _, rows, requests = public(name)
    assert rows[0] == HEADER.split(",")
    assert len(requests) == len(rows) - 1 == count
    assert requests[0].t == 0.0
    assert all(a.t <= b.t for a, b in itertools.pairwise(requests))
    assert [(r.num_tokens, r.output_tokens) for r in requests] == [
        (int(row[1]), int(row[2])) for row in rows[1:]
    ]
    assert all(len(r.keys) == -(-r.num_tokens // 16) for r in requests)
    assert [r.request_id for r in requests] == [str(i) for i in range(2, count + 2)]
