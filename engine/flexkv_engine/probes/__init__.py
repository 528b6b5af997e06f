"""Probes of this machine's data plane behind ``flexkv-run bench ssd|gpu|remote``: our SSD
path against fio, the GPU <-> host copies against a contiguous copy, the remote stores'
put and get rates. The repository's ``bench/`` holds the benchmark scripts and their
RESULTS.md."""
