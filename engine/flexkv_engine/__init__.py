"""FlexKV Twin engine: a tiered KV-cache engine (CPU, SSD, remote) for LLM serving.

Importing this package loads nothing heavy: the torch-backed runtime lives in submodules
that are imported on demand. The shared core is :mod:`flexkv_engine.core`.
"""

__version__ = "0.1.0"
