"""The statistics the signals and the report share, in plain Python (no torch, no numpy, so the report
loads neither): average ranks and AUROC, the percentile bootstrap, the exact sign test, and the smallest
paired difference a study of n seeds can detect (scipy's t quantiles, imported when asked).

Bootstraps are seeded (the same report every time) and draw with :mod:`random`: :func:`bootstrap`
resamples items with ``Random.choices``, :func:`resampled_indices` gives index lists drawn with
``Random.randrange`` for statistics over several aligned columns (labels and scores resampled
together). Both read their interval off the same :func:`percentile_interval`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1 (the smallest) to ``len(values)``, in the order given; ties share their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Probability that a random positive scores above a random negative, ties counting half: the
    Mann-Whitney U of the positives over (positives x negatives), from average ranks. None without both
    a positive and a negative."""
    n_pos = sum(bool(p) for p in positives)
    n_neg = len(positives) - n_pos
    if not n_pos or not n_neg:
        return None
    rank_sum = sum(r for r, p in zip(average_ranks(scores), positives) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def percentile_interval(draws: Iterable[float | None], level: float = 0.95) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of ``draws`` (the sorted draw at
    floor(n * low) and the one at ceil(n * high) - 1); a draw that is None (a statistic a resample does
    not have, such as the AUROC of only right items) is left out; (nan, nan) without any draw."""
    ordered = sorted(d for d in draws if d is not None)
    n = len(ordered)
    if not n:
        return math.nan, math.nan
    return ordered[int(math.floor((1 - level) / 2 * n))], ordered[min(n - 1, int(math.ceil((1 + level) / 2 * n)) - 1)]


def bootstrap(statistic: Callable[[list[T]], float | None], items: Sequence[T], *, resamples: int, seed: int = 0,
              level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``items`` resampled with replacement
    (``Random(seed).choices``); resamples whose statistic is None are left out. (nan, nan) without items."""
    if not items:
        return math.nan, math.nan
    rng = random.Random(seed)
    return percentile_interval((statistic(rng.choices(items, k=len(items))) for _ in range(resamples)), level)


def resampled_indices(n: int, resamples: int, seed: int = 0) -> Iterator[list[int]]:
    """``resamples`` lists of ``n`` indices into ``range(n)``, drawn with replacement
    (``Random(seed).randrange``): the same items for every column they index."""
    rng = random.Random(seed)
    for _ in range(resamples):
        yield [rng.randrange(n) for _ in range(n)]


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test on the discordant pairs (McNemar's exact test): ties carry no evidence."""
    n = wins + losses
    if not n:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def detectable_difference(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.80) -> float:
    """The smallest true mean difference a two-sided paired t-test over ``n`` pairs detects with
    probability ``power`` at level ``alpha``, when the differences have standard deviation ``sd``:
    (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), the usual approximation (the noncentral t
    gives slightly less for a few pairs). Before comparing methods, a study should know it: a
    difference below it is not evidence either way. NaN for fewer than 2 pairs."""
    if n < 2 or math.isnan(sd):
        return math.nan
    from scipy.stats import t

    return float((t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))
