#!/usr/bin/env bash
# Every benchmark, one after the other; results go to stdout as JSON (copy the figures,
# with the command, into bench/RESULTS.md). Needs the public traces (FLEXKV_TRACES_DIR).
# Run through `make bench`, which puts the project's virtual environment on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== core: planner hit-rate path vs a bare OrderedDict LRU"
python bench/core_replay.py --tokens 3e6 6e7
echo "== block keys: native against core/keys.py, per block"
python bench/block_keys.py
echo "== twin: requests per second, hit-rate and timing modes"
python bench/twin_speed.py
echo "== hit-rate curve vs five replays"
python bench/curve_speed.py
echo "== sweep: 12 configurations over 50,000 generated requests, 2 jobs"
python bench/sweep_speed.py
echo "== SSD tier: ours vs fio (2 MiB ops, queue depth 32)"
flexkv-run bench ssd --io-size 2MiB --queue-depth 32 --json
echo "== held-out prediction of an engine run (CPU + SSD)"
python bench/calibration.py
echo "== SSD integrity checks: the mover with and without its slot table"
python bench/ssd_checks.py --serial
python bench/ssd_checks.py
echo "== soak: GET/PUT threads against CPU + SSD for 10 minutes, accounting checked"
python bench/soak.py --seconds 600 --fault-interval 60
if python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "== GPU transfers"
  flexkv-run bench gpu --json
fi
