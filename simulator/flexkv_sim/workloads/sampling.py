"""Random draws of the generators: lengths, counts, popularity and arrival times.

Everything draws from a ``random.Random`` passed in, using only its documented methods
whose algorithms have been stable across Python releases (``random``, ``expovariate``,
``lognormvariate``, ``gammavariate``), so a seed gives the same trace on any Python 3.10+
and without numpy. Times are rounded to the microsecond, which also hides last-digit
differences between platform math libraries.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate

ARRIVALS = ("poisson", "bursty")
#: Default coefficient of variation of the gaps between arrivals for ``bursty``.
DEFAULT_BURSTINESS = 2.0


def lognormal_int(rng: random.Random, mean: float, sigma: float, hi: int | None = None) -> int:
    """A length drawn from a lognormal of the given mean (before rounding) and log-sigma.

    ``sigma`` is the standard deviation of the log; 0 gives ``mean`` every time. The
    result is rounded and clipped to ``[1, hi]``.
    """
    if sigma > 0.0:
        value = rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)
    else:
        value = mean
    n = max(1, round(value))
    return n if hi is None else min(n, hi)


def geometric(rng: random.Random, mean: float, hi: int) -> int:
    """A count >= 1 with a geometric distribution of the given mean, clipped to ``hi``."""
    if mean <= 1.0:
        return 1
    # Inverse CDF of the number of trials to the first success, p = 1 / mean.
    n = 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))
    return min(n, hi)


class Zipf:
    """Ranks ``0 .. n-1`` with probability proportional to ``(rank + 1) ** -exponent``.

    Rank 0 is the most popular item; exponent 0 is uniform.
    """

    def __init__(self, n: int, exponent: float) -> None:
        if n < 1:
            raise ValueError(f"a Zipf distribution needs at least one item, got {n}")
        self._cum = list(accumulate((rank + 1) ** -exponent for rank in range(n)))
        self._last = n - 1

    def sample(self, rng: random.Random) -> int:
        return min(bisect_right(self._cum, rng.random() * self._cum[-1]), self._last)

    def sample_distinct(self, rng: random.Random, k: int) -> list[int]:
        """``k`` distinct ranks in the order drawn (by rejection of repeats)."""
        if k > self._last + 1:
            raise ValueError(f"cannot draw {k} distinct items out of {self._last + 1}")
        out: list[int] = []
        seen: set[int] = set()
        while len(out) < k:
            rank = self.sample(rng)
            if rank not in seen:
                seen.add(rank)
                out.append(rank)
        return out


def arrival_times(
    n: int,
    rng: random.Random,
    rate: float,
    arrival: str = "poisson",
    burstiness: float | None = None,
) -> Iterator[float]:
    """``n`` non-decreasing arrival times in seconds, the first at 0, rounded to 1 us.

    The gaps between arrivals have mean ``1 / rate``. ``poisson``: exponential gaps
    (coefficient of variation 1). ``bursty``: gamma gaps with coefficient of variation
    ``burstiness`` (default 2): above 1, arrivals come in clumps separated by long lulls;
    below 1 they are more regular than Poisson. Arguments are checked now, not lazily.
    """
    check_arrivals(rate, arrival, burstiness)
    if arrival == "poisson":
        gaps = _exponential_gaps(rng, rate)
    else:
        cv = DEFAULT_BURSTINESS if burstiness is None else burstiness
        gaps = _gamma_gaps(rng, 1.0 / (cv * cv), rate)
    return _times(n, gaps)


def _exponential_gaps(rng: random.Random, rate: float) -> Iterator[float]:
    while True:
        yield rng.expovariate(rate)


def _gamma_gaps(rng: random.Random, shape: float, rate: float) -> Iterator[float]:
    scale = 1.0 / (rate * shape)  # mean shape * scale = 1 / rate
    while True:
        yield rng.gammavariate(shape, scale)


def _times(n: int, gaps: Iterator[float]) -> Iterator[float]:
    t = 0.0
    for i in range(n):
        if i:
            t += next(gaps)
        yield round(t, 6)


def check_arrivals(rate: float, arrival: str, burstiness: float | None) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    if not (isinstance(rate, (int, float)) and 0.0 < rate < math.inf):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if arrival not in ARRIVALS:
        raise ValueError(f"unknown arrival process {arrival!r}; choose from: {', '.join(ARRIVALS)}")
    if burstiness is None:
        return
    if not (isinstance(burstiness, (int, float)) and 0.0 < burstiness < math.inf):
        raise ValueError(f"burstiness must be a positive number, got {burstiness!r}")
    if arrival == "poisson" and burstiness != 1.0:
        raise ValueError(
            f"burstiness={burstiness} applies to the bursty arrival process only "
            "(Poisson gaps have a coefficient of variation of 1)"
        )
