#!/usr/bin/env bash
# Every benchmark, one after the other; results go to stdout as JSON (copy the figures,
# with the command, into bench/RESULTS.md). Needs the public traces (FLEXKV_TRACES_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== core: planner hit-rate path vs a bare OrderedDict LRU"
python bench/core_replay.py --tokens 3e6 6e7
echo "== twin: requests per second, hit-rate and timing modes"
python bench/twin_speed.py
if flexkv-run bench --help >/dev/null 2>&1; then
  echo "== SSD tier: ours vs fio (2 MiB ops, queue depth 32)"
  flexkv-run bench ssd --io-size 2MiB --queue-depth 32 --json
fi
