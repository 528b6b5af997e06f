"""Long replay loops: progress bars on stderr (runs over a second), and GC control."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool | None = None) -> Any:
    """A tqdm bar on stderr (``enabled=None``: only when stderr is a terminal)."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", file=sys.stderr, delay=1.0, leave=False)


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector around a replay loop.

    A large tier holds millions of keys and block ids in lists; every full collection
    would walk them all, so the cost per request grows with capacity. The index frees
    what it evicts by reference counting (a removed node is referenced by nothing), so
    nothing accumulates while the collector waits.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
