"""The importer of FlexKV's tracer output: header from the config event, exact records."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from flexkv_engine.config import config_from_dict
from flexkv_engine.core.keys import block_keys
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

CONFIG_DATA: dict[str, Any] = {
    "model_config": {
        "num_layers": 32, "num_kv_heads": 8, "head_size": 128, "use_mla": False,
        "dtype": "torch.bfloat16", "tp_size": 2, "dp_size": 1,
    },
    "cache_config": {
        "tokens_per_block": 4, "enable_cpu": True, "enable_ssd": True, "enable_remote": False,
        "enable_gds": False, "num_cpu_blocks": 1024, "num_ssd_blocks": 4096,
        "num_remote_blocks": None, "ssd_cache_dir": ["/mnt/a", "/mnt/b"],
        "remote_cache_path": None, "evict_ratio": 0.1,
    },
    "global_config": {
        "server_client_mode": False, "cpu_layout_type": "KVCacheLayoutType.BLOCKFIRST",
        "use_ce_transfer_h2d": False, "transfer_sms_h2d": 8, "transfer_num_cta_d2h": 4,
        "iouring_entries": 512, "max_file_size_gb": -1, "evict_ratio": 0.05,
    },
    "gpu_layout": None,
}  # fmt: skip
TOKENS_A = [101, 102, 103, 104, 105, 106, 107, 108, 109]
TOKENS_B = [*TOKENS_A, 110, 111]


def event(time: str, kind: str, data: dict[str, Any]) -> str:
    line = {"timestamp": f"2025-06-01T{time}", "event_type": kind, "component": "KVManager"}
    return json.dumps({**line, "data": data}, separators=(",", ":"))


def request(kind: str, rid: int, tokens: list[int], **extra: Any) -> dict[str, Any]:
    data = {"request_type": kind, "request_id": rid, "token_ids": tokens}
    data.update(slot_mapping=list(range(len(tokens))), token_mask=None, dp_client_id=0)
    return {**data, **extra}


LINES = [
    event("12:00:00.123456", "config", CONFIG_DATA),
    event("12:00:00.623456", "request", request("GET", 0, TOKENS_A, token_mask=[0] * 4 + [1] * 5)),
    event("12:00:01", "wait", {"wait_type": "wait", "task_ids": [0], "timeout": 20.0}),
    event("12:00:01.123456", "request", request("PUT", 1, TOKENS_B, token_mask=[True] * 11)),
    event("12:00:02.123456", "request", request("GET_MATCH", 2, TOKENS_B[:3])),
    event("12:00:02.123456", "launch_tasks", {"task_ids": [2], "slot_mappings": [[0, 1, 2]]}),
    event("12:00:03.123456", "request", request("PREFETCH_ASYNC", 3, TOKENS_A)),
    event("12:00:03.123457", "request", request("put_match", 4, [], namespace=["lora-1", "t"])),
]


def write(tmp_path: Path, lines: list[str], name: str = "flexkv_trace.log") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_small_tracer_file_imports_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, LINES)
    trace = read_trace(path)
    assert trace.format == "flexkv-tracer"
    assert trace.header == TraceHeader(
        version=SCHEMA_VERSION,
        source="flexkv-tracer-import",
        tokens_per_block=4,
        model_config={
            "num_layers": 32, "num_kv_heads": 8, "head_size": 128, "use_mla": False,
            "dtype": "bfloat16",
        },
        cache_config={
            "use_ce_transfer_h2d": False, "transfer_sms_h2d": 8, "ssd_cache_iouring_entries": 512,
            "max_file_size_gb": -1.0, "evict_ratio": 0.1, "tokens_per_block": 4,
            "enable_ssd": True, "enable_remote": False, "num_cpu_blocks": 1024,
            "num_ssd_blocks": 4096, "num_remote_blocks": None,
            "ssd_cache_dir": ["/mnt/a", "/mnt/b"],
        },
        meta={
            "original_format": "flexkv-tracer",
            "original_file": "flexkv_trace.log",
            "start_time": "2025-06-01T12:00:00.123456",
            "flexkv_config": CONFIG_DATA,
            "flexkv_config_unmapped": [
                "global_config.server_client_mode", "global_config.cpu_layout_type",
                "global_config.transfer_num_cta_d2h", "cache_config.enable_cpu",
                "cache_config.enable_gds", "cache_config.remote_cache_path",
                "model_config.tp_size", "model_config.dp_size",
            ],
        },
    )  # fmt: skip
    wait = {"wait_type": "wait", "task_ids": [0], "timeout": 20.0}
    assert list(trace) == [
        RequestRecord(0.5, "get", "0", 9, block_keys(TOKENS_A, 4)),
        {"type": "x-flexkv-event", "t": 0.876544, "event_type": "wait", "component": "KVManager",
         "data": wait},
        RequestRecord(1.0, "put", "1", 11, block_keys(TOKENS_B, 4)),
        RequestRecord(2.0, "get", "2", 3, block_keys(TOKENS_B[:3], 4)),
        {"type": "x-flexkv-event", "t": 2.0, "event_type": "launch_tasks",
         "component": "KVManager", "data": {"task_ids": [2]}},
        {"type": "x-prefetch", "t": 3.0, "id": "3", "tokens": 9, "keys": block_keys(TOKENS_A, 4)},
        RequestRecord(3.000001, "put", "4", 0, [], "lora-1/t"),
    ]  # fmt: skip
    header, requests = load_requests(path)
    assert [r.request_id for r in requests] == ["0", "1", "2", "4"]
    assert requests[0].keys[:2] == requests[1].keys[:2] == block_keys(TOKENS_B[:8], 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = config_from_dict(
            {"cache_config": header.cache_config, "model_config": header.model_config}
        )
    assert config.cache_config.num_ssd_blocks == 4096 and config.model_config.dtype == "bfloat16"


def test_detection_and_conversion(tmp_path: Path) -> None:
    assert detect_format(LINES[0]) == "flexkv-tracer"
    assert detect_format(LINES[2]) == "flexkv-tracer"
    with pytest.raises(TraceError, match="cannot tell the trace format"):
        detect_format('{"event_type": "wait", "timestamp": 1}')  # no data
    src = write(tmp_path, LINES)
    dst = tmp_path / "ours.jsonl.gz"
    assert convert(src, dst) == 7
    assert read_trace(dst).header == read_trace(src).header
    assert list(read_trace(dst)) == list(read_trace(src))


def test_block_size_without_and_with_a_config(tmp_path: Path) -> None:
    no_config = write(tmp_path, LINES[1:], "no_config.log")
    assert read_trace(no_config).header.tokens_per_block == 16
    assert read_trace(no_config).header.cache_config is None
    header, [first, *_] = load_requests(no_config, block_size=2)
    assert header.tokens_per_block == 2 and first.keys == block_keys(TOKENS_A, 2)
    assert first.t == 0.0 and header.meta["start_time"] == "2025-06-01T12:00:00.623456"
    assert read_trace(write(tmp_path, LINES), block_size=4).header.tokens_per_block == 4
    with pytest.raises(TraceError, match=r"flexkv_trace.log:1: .*4-token blocks but block_size=8"):
        read_trace(write(tmp_path, LINES), block_size=8)


def test_later_config_events_must_agree(tmp_path: Path) -> None:
    same = write(tmp_path, [*LINES[:2], LINES[0].replace("12:00:00.1", "12:00:05.1")], "s.log")
    assert list(read_trace(same))[-1]["event_type"] == "config"  # type: ignore[index]
    other = json.loads(LINES[0])
    other["data"]["cache_config"]["tokens_per_block"] = 8
    path = write(tmp_path, [*LINES[:2], json.dumps(other)], "o.log")
    with pytest.raises(TraceError, match=r"o.log:3: .*tokens_per_block=8, the trace is read at 4"):
        list(read_trace(path))


def replace(line: str, old: str, new: str) -> str:
    assert old in line
    return line.replace(old, new)


GET = LINES[1]
BAD = [
    (replace(GET, '"GET"', '"DELETE"'), "request_type must be one of GET, GET_MATCH"),
    (replace(GET, '"request_type":"GET",', ""), "request_type must be one of"),
    (replace(GET, '"token_ids":[101,', '"token_ids":[-1,'), "token_ids[0] must be a token id"),
    (replace(GET, '"token_ids":[101,', '"token_ids":[true,'), "token_ids[0] must be a token id"),
    (replace(GET, '"token_ids":[101,', '"token_ids":[[101],'), "token_ids[0] must be a token"),
    (
        replace(GET, '"token_ids":[101,102,103,104,105,106,107,108,109]', '"token_ids":"101"'),
        "token_ids must be a flat list",
    ),
    (replace(GET, '"token_mask":[0,0,0,0,', '"token_mask":[0,0,0,'), "token_mask has 8 entries"),
    (replace(GET, '"token_mask":[0,0,0,0,', '"token_mask":[0,0,0,2,'), "only true/false or 0/1"),
    (replace(GET, '"token_mask":[0,0,0,0,', '"token_mask":[0,0,0,0.0,'), "list of booleans"),
    (replace(GET, '"request_id":0', '"request_id":1.5'), "request_id must be an integer or"),
    (replace(GET, '"request_id":0', '"request_id":0,"namespace":7'), "namespace must be a"),
    (replace(GET, "2025-06-01T12:00:00.623456", "June 1st"), "timestamp must be an ISO time"),
    (replace(GET, '"2025-06-01T12:00:00.623456"', "1748779200"), "timestamp must be an ISO"),
    (replace(GET, "12:00:00.623456", "11:59:59"), "earlier than the first event's"),
    (replace(GET, "12:00:00.623456", "12:00:00.6+02:00"), "mix time zones"),
    (replace(GET, '"event_type":"request"', '"event_type":""'), "event_type must be a non-empty"),
    (replace(GET, '"data":{', '"data":[{').replace("}}", "}]}"), "data must be an object"),
    (GET[:-1], "malformed JSON"),
]


@pytest.mark.parametrize(("bad", "words"), BAD)
def test_bad_event_is_reported_with_file_and_line(tmp_path: Path, bad: str, words: str) -> None:
    path = write(tmp_path, [LINES[0], GET, bad, GET])
    with pytest.raises(TraceError) as err:
        list(read_trace(path))
    assert err.value.line == 3
    assert words in err.value.reason
    assert str(err.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({**CONFIG_DATA, "cache_config": {"tokens_per_block": 0}}, "tokens_per_block, an integer"),
        ({**CONFIG_DATA, "cache_config": None}, "needs data.cache_config.tokens_per_block"),
        ({**CONFIG_DATA, "model_config": [1]}, "config data.model_config must be an object"),
    ],
)
def test_bad_config_event_is_reported(tmp_path: Path, config: dict[str, Any], words: str) -> None:
    path = write(tmp_path, ["", event("12:00:00", "config", config), GET])
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert err.value.line == 2
    assert words in err.value.reason
