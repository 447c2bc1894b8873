"""Each signal's AUROC pooled over the annotations of all a setting's seeds, with a bootstrap interval.

Per-seed AUROCs over 100 annotations swing by ±0.09; the seeds buy mostly different questions, so
pooling their signals.jsonl rows gives one estimate over a few hundred annotations and an interval from
resampling annotations. The values pooled are each run's own (rank-normalised) signal values, as the
per-seed AUROCs in results.json use them."""

from __future__ import annotations

from pathlib import Path

from tailkd.jsonl import read_rows
from tailkd.report.aggregate import Group
from tailkd.stats import auroc, percentile_interval, resampled_indices

SIGNALS = ("self_consistency", "ta_student", "ta_teacher")


def pooled_aurocs(group: Group, resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float, int]]:
    """{signal or "weight": (AUROC, CI low, CI high, annotations)} over the group's signals.jsonl rows
    with a known teacher answer; a signal no row has, or rows all right or all wrong, is left out."""
    rows = [row for run in group.runs for row in read_rows(run.path / "signals.jsonl", missing_ok=True) if row.get("teacher_correct") is not None]
    labels = [bool(row["teacher_correct"]) for row in rows]
    columns = {name: [(row.get(name) or {}).get("value") for row in rows] for name in SIGNALS}
    columns["weight"] = [row.get("score") for row in rows]
    draws = list(resampled_indices(len(rows), resamples, seed)) if rows else []
    out = {}
    for name, values in columns.items():
        if any(v is None for v in values) or not values:
            continue
        point = auroc(values, labels)
        if point is None:
            continue
        low, high = percentile_interval(auroc([values[i] for i in d], [labels[i] for i in d]) for d in draws)
        out[name] = (point, low, high, len(values))
    return out


def auroc_with_interval(values: list[float], labels: list[bool], resamples: int = 1000,
                        seed: int = 0) -> tuple[float, float, float] | None:
    """(AUROC, 95% percentile-bootstrap interval over the items); None if all are right or all wrong."""
    point = auroc(values, labels)
    if point is None:
        return None
    draws = resampled_indices(len(values), resamples, seed)
    return (point, *percentile_interval(auroc([values[i] for i in d], [labels[i] for i in d]) for d in draws))


def paired_auroc_difference(first: list[float], second: list[float], labels: list[bool], resamples: int = 1000,
                            seed: int = 0) -> tuple[float, float, float] | None:
    """AUROC(first) - AUROC(second) over the same items, with a 95% interval from resampling the items
    together: two scorers of one set of annotations differ by less than their separate intervals show."""
    a, b = auroc(first, labels), auroc(second, labels)
    if a is None or b is None:
        return None
    diffs = []
    for d in resampled_indices(len(labels), resamples, seed):
        y = [labels[i] for i in d]
        x, z = auroc([first[i] for i in d], y), auroc([second[i] for i in d], y)
        diffs.append(None if x is None or z is None else x - z)
    return (a - b, *percentile_interval(diffs))


def pooled_test_answers(group: Group) -> tuple[int, int, int] | None:
    """(test questions right here only, right in the baseline only, answers compared), pooled over the
    seeds both have predictions.jsonl for. Three seeds give the paired bootstrap three numbers; at a few
    percent accuracy the question-level disagreements are where the evidence is."""
    if group.baseline is None or group.baseline is group:
        return None
    base = {str(r.seed): r for r in group.baseline.runs}
    only_here = only_base = compared = 0
    for run in group.runs:
        other = base.get(str(run.seed))
        mine, theirs = _test_answers(run.path), _test_answers(other.path) if other is not None else {}
        for question in mine.keys() & theirs.keys():
            compared += 1
            only_here += mine[question] and not theirs[question]
            only_base += theirs[question] and not mine[question]
    return (only_here, only_base, compared) if compared else None


def _test_answers(run_dir: Path) -> dict[str, bool]:
    return {str(row["id"]): bool(row["correct"]) for row in read_rows(run_dir / "predictions.jsonl", missing_ok=True)
            if "id" in row and "correct" in row}
