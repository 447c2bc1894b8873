"""tailkd.stats, the statistics the signals and the report share: average ranks and AUROC, the seeded
percentile bootstrap, the exact sign test; where scipy is installed, checked against its own."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from tailkd.stats import (
    auroc,
    average_ranks,
    bootstrap,
    detectable_difference,
    percentile_interval,
    resampled_indices,
    sign_test,
)


def test_average_ranks_share_ties():
    assert average_ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert average_ranks([5.0, 5.0, 5.0]) == [2.0, 2.0, 2.0] and average_ranks([]) == []


def test_auroc_counts_ties_half_and_needs_both_classes():
    assert auroc([0.1, 0.3, 0.35, 0.8], [False, True, False, True]) == 0.75
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0], [True]) is None and auroc([1.0, 2.0], [False, False]) is None


def test_percentile_interval_leaves_out_missing_draws():
    draws = [float(i) for i in range(100)] + [None]
    assert percentile_interval(draws) == (2.0, 97.0)
    assert percentile_interval([0.5]) == (0.5, 0.5)
    assert all(math.isnan(x) for x in percentile_interval([None, None]))


def test_the_bootstrap_is_seeded_and_resamples_with_random_choices():
    values = [0.03, 0.05, 0.04, 0.1]
    low, high = bootstrap(statistics.fmean, values, resamples=1000, seed=3)
    assert (low, high) == bootstrap(statistics.fmean, values, resamples=1000, seed=3)
    rng = random.Random(3)  # what it draws: Random(seed).choices, one resample after another
    means = sorted(statistics.fmean(rng.choices(values, k=4)) for _ in range(1000))
    assert (low, high) == (means[25], means[974])
    assert all(math.isnan(x) for x in bootstrap(statistics.fmean, [], resamples=10))


def test_resampled_indices_draw_with_randrange():
    rng = random.Random(5)
    assert list(resampled_indices(3, 2, seed=5)) == [[rng.randrange(3) for _ in range(3)] for _ in range(2)]


def test_sign_test_is_exact():
    assert sign_test(3, 1) == pytest.approx(0.625) and sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024) and sign_test(5, 5) == 1.0


def test_the_same_numbers_as_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (5, 40, 300):
        scores = [rng.randrange(7) / 7 for _ in range(n)]  # many ties
        labels = [i % 3 == 0 for i in range(n)]
        assert average_ranks(scores) == list(scipy_stats.rankdata(scores))
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        u = scipy_stats.mannwhitneyu(pos, neg).statistic
        assert auroc(scores, labels) == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)
    for wins, losses in ((3, 1), (12, 4), (30, 31)):
        assert sign_test(wins, losses) == pytest.approx(scipy_stats.binomtest(wins, wins + losses).pvalue, rel=1e-9)


def test_a_true_difference_of_the_detectable_size_is_found_about_80_percent_of_the_time():
    """Simulated paired studies: differences ~ N(delta, sd), delta the detectable difference for n pairs;
    a two-sided paired t-test at 5% rejects in about 80% of them (the approximation errs a little high
    for few pairs), and in about 5% when delta is 0."""
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    sd, n, trials = 0.03, 8, 3000
    delta = detectable_difference(sd, n)
    assert delta == pytest.approx((stats.t.ppf(0.975, 7) + stats.t.ppf(0.8, 7)) * sd / math.sqrt(n))

    def rejected(mean):
        hits = 0
        for _ in range(trials):
            diffs = [rng.gauss(mean, sd) for _ in range(n)]
            hits += stats.ttest_1samp(diffs, 0.0).pvalue < 0.05
        return hits / trials

    assert 0.76 <= rejected(delta) <= 0.86
    assert 0.03 <= rejected(0.0) <= 0.07
    assert detectable_difference(2 * sd, n) == pytest.approx(2 * delta)  # proportional to the spread
    assert detectable_difference(sd, 4 * n) < delta / 2 < detectable_difference(sd, n)  # more seeds, finer
    assert math.isnan(detectable_difference(sd, 1))
