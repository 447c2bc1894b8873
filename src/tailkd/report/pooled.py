"""Each signal's AUROC pooled over the annotations of all a setting's seeds, with a bootstrap interval.

Per-seed AUROCs over 100 annotations swing by ±0.09; the seeds buy mostly different questions, so
pooling their signals.jsonl rows gives one estimate over a few hundred annotations and an interval from
resampling annotations. The values pooled are each run's own (rank-normalised) signal values, as the
per-seed AUROCs in results.json use them."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from tailkd.report.aggregate import Group

SIGNALS = ("self_consistency", "ta_student", "ta_teacher")


def pooled_aurocs(group: Group, resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float, int]]:
    """{signal or "weight": (AUROC, CI low, CI high, annotations)} over the group's signals.jsonl rows
    with a known teacher answer; a signal no row has, or rows all right or all wrong, is left out."""
    rows = [row for run in group.runs for row in _rows(run.path / "signals.jsonl") if row.get("teacher_correct") is not None]
    labels = [bool(row["teacher_correct"]) for row in rows]
    columns = {name: [(row.get(name) or {}).get("value") for row in rows] for name in SIGNALS}
    columns["weight"] = [row.get("score") for row in rows]
    rng = random.Random(seed)
    draws = [[rng.randrange(len(rows)) for _ in rows] for _ in range(resamples)] if rows else []
    out = {}
    for name, values in columns.items():
        if any(v is None for v in values) or not values:
            continue
        point = auroc(values, labels)
        if point is None:
            continue
        boots = sorted(a for a in (auroc([values[i] for i in d], [labels[i] for i in d]) for d in draws) if a is not None)
        low = boots[int(math.floor(0.025 * len(boots)))]  # the same percentiles as aggregate.bootstrap_ci
        high = boots[min(len(boots) - 1, int(math.ceil(0.975 * len(boots))) - 1)]
        out[name] = (point, low, high, len(values))
    return out


def auroc(scores: list[float], positives: list[bool]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half); Mann-Whitney
    with average ranks. (tailkd.signals has the same; importing it would load torch into the report.)"""
    n_pos = sum(positives)
    n_neg = len(positives) - n_pos
    if not n_pos or not n_neg:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, p in zip(ranks, positives) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
