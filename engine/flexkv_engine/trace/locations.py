"""Where the public traces live (they are read in place, never copied into the tree)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder of public traces.
TRACES_DIR_ENV = "FLEXKV_TRACES_DIR"


def public_traces_dir() -> Path:
    """``$FLEXKV_TRACES_DIR``, or ``<repository root>/../shared/traces`` when unset.

    The folder may not exist; tests and benchmarks check for the file they need and
    skip, saying so, when it is absent.
    """
    configured = os.environ.get(TRACES_DIR_ENV)
    if configured:
        return Path(configured)
    repo_root = Path(__file__).resolve().parents[3]  # trace/ flexkv_engine/ engine/ <root>
    return repo_root.parent / "shared" / "traces"
