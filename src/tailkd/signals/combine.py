"""From raw signals to one weight per example: orient, normalise, combine.

Orientation (``signals.<name>.value``) decides whether a high raw value should raise the weight. Our
defaults, where the paper is silent: the student's *uncertainty* (1 - majority share: learn more
from what it does not yet know), the TA's *doubt* in the student's output (1 - confidence: the same,
judged by the TA), and the TA's *confidence* in the teacher's output (trust annotations the TA
believes). Normalisation puts signals on one scale; the product (default) or weighted mean combines
them. The weight is later scaled to mean 1 over the training set by the loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tailkd.errors import ConfigError
from tailkd.stats import average_ranks

NORMALISERS = ("rank", "minmax", "softmax", "none")
COMBINERS = ("product", "mean")


def normalise(values: Sequence[float], method: str, temperature: float = 1.0) -> list[float]:
    """rank: average-rank percentiles in (0, 1]; minmax: onto [0, 1]; softmax: exp(v/T) scaled to mean 1."""
    n = len(values)
    if n == 0:
        return []
    if method == "none":
        return list(values)
    if method == "rank":
        return [r / n for r in average_ranks(values)]  # ties share their average rank
    if method == "minmax":
        low, high = min(values), max(values)
        return [1.0] * n if high == low else [(v - low) / (high - low) for v in values]
    if method == "softmax":
        if temperature <= 0:
            raise ConfigError(f"signals.softmax_temperature must be positive (got {temperature})")
        top = max(values)
        exps = [math.exp((v - top) / temperature) for v in values]
        mean = sum(exps) / n
        return [e / mean for e in exps]
    raise ConfigError(f"signals.normalise={method!r} is unknown; choose one of {list(NORMALISERS)}")


def combine(columns: Mapping[str, Sequence[float]], method: str, weights: Mapping[str, float]) -> list[float]:
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    if not names:
        return [1.0] * n
    if method == "product":
        out = [1.0] * n
        for name in names:
            power = weights.get(name, 1.0)
            out = [o * (max(v, 0.0) ** power) for o, v in zip(out, columns[name])]
        return out
    if method == "mean":
        total = sum(weights.get(name, 1.0) for name in names)
        return [sum(weights.get(name, 1.0) * columns[name][i] for name in names) / total for i in range(n)]
    raise ConfigError(f"signals.combine={method!r} is unknown; choose one of {list(COMBINERS)}")

