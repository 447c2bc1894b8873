"""Group runs by setting and summarise each group over its seeds: mean and sample std (n-1) of the
metric, relative improvement over ``finetune`` at the same task, student, budget and teacher, spend."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tailkd.report.runs import Run, find_baseline, is_number
from tailkd.stats import bootstrap

SPEND = ("teacher_queries", "teacher_output_tokens", "teacher_cost_usd", "teacher_paid_usd")
BUDGET_KEYS = ("budget.max_queries", "budget.max_usd", "budget.max_tokens", "budget")


@dataclass
class Group:
    setting: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    baseline: Group | None = None
    oracle: Group | None = None  # the reference that reads gold, at the same task, student, budget and teacher

    def values(self, key: str) -> list[float]:
        return [float(r.results[key]) for r in self.runs if is_number(r.results.get(key))]

    def mean(self, key: str) -> float:
        values = self.values(key)
        return statistics.fmean(values) if values else math.nan

    def std(self, key: str) -> float:
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else math.nan

    def total(self, key: str) -> float:
        return sum(self.values(key))

    @property
    def seeds(self) -> list[Any]:
        return sorted((r.seed for r in self.runs), key=str)

    def relative_improvement(self, metric: str) -> float:
        """(mean - baseline mean) / baseline mean, in percent; nan without a baseline."""
        if self.baseline is None or self.baseline is self:
            return math.nan
        base = self.baseline.mean(metric)
        return 100.0 * (self.mean(metric) - base) / base if base else math.nan

    def paired_differences(self, metric: str) -> list[float]:
        """metric - baseline metric for each seed both have (same seed: same questions bought, same
        data order), which cancels much of the seed-to-seed spread that the means carry."""
        if self.baseline is None or self.baseline is self:
            return []
        base = {str(r.seed): r.results.get(metric) for r in self.baseline.runs}
        return [float(r.results[metric]) - float(base[str(r.seed)]) for r in self.runs
                if is_number(r.results.get(metric)) and is_number(base.get(str(r.seed)))]

    def headroom_share(self, metric: str, resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float] | None:
        """(method - baseline) / (oracle - baseline), with a 95% percentile-bootstrap interval over the seeds
        all three have (resampled together): how much of what a perfect signal gains this method gains.
        None without an oracle and a baseline, or when the oracle gains nothing over the baseline."""
        gains = self._gains_and_headroom(metric)
        share = _ratio_of_means(gains)
        if share is None:
            return None
        return share, *bootstrap(_ratio_of_means, gains, resamples=resamples, seed=seed)  # seeds resampled together

    def headroom_within_noise(self, metric: str) -> bool:
        """The oracle's gain over the baseline, on the seeds the share uses, has a paired 95% interval
        reaching 0 (or fewer than 2 seeds): a share of it is a ratio of noise."""
        headroom = [oracle for _, oracle in self._gains_and_headroom(metric)]
        return len(headroom) < 2 or bootstrap_ci(headroom)[0] <= 0

    def _gains_and_headroom(self, metric: str) -> list[tuple[float, float]]:
        """(this - baseline, oracle - baseline) for each seed all three have: the share's one source."""
        if self.oracle is None or self.baseline is None or self.baseline is self:
            return []
        def by_seed(group: Group) -> dict[str, float]:
            return {str(r.seed): float(r.results[metric]) for r in group.runs if is_number(r.results.get(metric))}
        here, base, best = by_seed(self), by_seed(self.baseline), by_seed(self.oracle)
        return [(here[s] - base[s], best[s] - base[s]) for s in sorted(set(here) & set(base) & set(best))]

    def commits(self) -> list[str]:
        """The source commits the runs came from (short, ``+dirty`` for uncommitted changes)."""
        found = {f"{str(r.results['git_commit'])[:8]}{'+dirty' if r.results.get('git_dirty') else ''}"
                 for r in self.runs if r.results.get("git_commit")}
        return sorted(found)

    def budget(self) -> float:
        """The budget this group was given, for the x axis: the swept budget key, else queries spent."""
        for key in BUDGET_KEYS:
            value = self.setting.get(key)
            if value not in (None, "", "null") and is_number(value):
                return float(value)
        return self.mean("teacher_queries")


def _ratio_of_means(gains: list[tuple[float, float]]) -> float | None:
    """mean(method gain) / mean(oracle gain); None when the oracle gains nothing (no headroom to share)."""
    if not gains:
        return None
    headroom = statistics.fmean(g for _, g in gains)
    return statistics.fmean(m for m, _ in gains) / headroom if headroom > 0 else None


def bootstrap_ci(values: list[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: the same report every time).
    With 3 paired seeds there are only 10 distinct resamples: the interval is a rough guide, and a
    zero-width one means every seed agreed, not certainty."""
    return bootstrap(statistics.fmean, values, resamples=resamples, seed=seed, level=level)


def group_runs(runs: Iterable[Run], baseline: str = "finetune", oracle: str | None = "finetune_oracle") -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = _key(run.setting)
        groups.setdefault(key, Group(dict(run.setting))).runs.append(run)
    settings = [g.setting for g in groups.values()]
    for group in groups.values():
        found = find_baseline(group.setting, baseline, settings)
        group.baseline = groups[_key(found)] if found is not None else None
        best = find_baseline(group.setting, oracle, settings) if oracle else None
        group.oracle = groups[_key(best)] if best is not None else None
    return sorted(groups.values(), key=lambda g: tuple(_sortable(v) for _, v in sorted(g.setting.items())))


def varying_keys(groups: list[Group]) -> list[str]:
    """Setting keys that differ between groups (constant ones go into the report's header)."""
    keys = sorted({k for g in groups for k in g.setting}, key=_column_order)
    return [k for k in keys if len({g.setting.get(k, "") for g in groups}) > 1 or k == "method"]


def constant_settings(groups: list[Group]) -> dict[str, str]:
    varying = set(varying_keys(groups))
    return {k: groups[0].setting[k] for k in sorted(groups[0].setting, key=_column_order)
            if k not in varying and all(g.setting.get(k) == groups[0].setting[k] for g in groups)}


def label(group: Group, keys: list[str]) -> str:
    return " ".join(f"{k}={group.setting[k]}" if k != "method" else group.setting[k]
                    for k in keys if group.setting.get(k, "") != "")


def _key(setting: dict[str, str]) -> tuple:
    return tuple(sorted(setting.items()))


def _column_order(key: str) -> tuple:
    first = ("task", "student", "method", "signals")
    return (first.index(key) if key in first else len(first), key)


def _sortable(value: str) -> tuple:
    return (0, float(value), "") if is_number(value) else (1, 0.0, str(value))
