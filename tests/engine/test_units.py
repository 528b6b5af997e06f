from __future__ import annotations

import pytest

from flexkv_engine.units import parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4096", 4096), (4096, 4096), ("64GiB", 64 * 2**30), ("2 MiB", 2 * 2**20),
     ("1.5GB", 1_500_000_000), ("32KiB", 32768)],
)
def test_sizes(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25GB/s", 25e9), ("12 GiB/s", 12 * 2**30), ("25GBps", 25e9), (7e9, 7e9)],
)
def test_rates(text, expected) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("8us", 8e-6), ("1.5ms", 1.5e-3), ("2s", 2.0), (0.25, 0.25)]
)
def test_durations(text, expected) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["64 parsecs", "fast", "-3GB", True, -1])
def test_bad_values_name_what_was_expected(bad) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)
