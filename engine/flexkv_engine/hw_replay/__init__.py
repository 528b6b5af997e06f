"""``flexkv-run replay``: a trace replayed on real hardware through the real engine.

An emulated serving engine (GPU block pool with its own prefix cache) issues each
request's GET, fills the blocks nobody had with bytes derived from their keys, issues
the PUT, and checks every block the engine loaded, byte for byte.
"""

from .run import RUN_COLUMNS, HardwareRun, run_replay
from .runner import RunOptions, replay_on_hardware

__all__ = ["RUN_COLUMNS", "HardwareRun", "RunOptions", "replay_on_hardware", "run_replay"]
