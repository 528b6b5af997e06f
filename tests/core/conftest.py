"""Helpers for core tests: chained keys from small paths of symbols."""

from __future__ import annotations

import pytest


def chain(symbols: list[int] | tuple[int, ...], salt: int = 0) -> list[int]:
    """Chained keys of a path: key i names the whole prefix ``symbols[:i + 1]``."""
    return [hash((salt, *symbols[: i + 1])) & ((1 << 64) - 1) for i in range(len(symbols))]


@pytest.fixture
def keys_of():
    return chain
