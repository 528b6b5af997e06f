"""FlexKV Twin simulator: replays traces through the engine's core to predict hit rate and latency.

Never imports torch or the engine's data plane.
"""

from flexkv_engine import __version__

__all__ = ["__version__"]
