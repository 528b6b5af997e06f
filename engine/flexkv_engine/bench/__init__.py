"""Benchmarks of the engine's data plane on this machine (``flexkv-run bench ...``)."""
