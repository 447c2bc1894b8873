"""Write ``report.md``, ``runs.csv``, ``summary.csv`` and the PNG plots for a set of runs."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailkd.report.aggregate import (
    SPEND,
    Group,
    bootstrap_ci,
    constant_settings,
    group_runs,
    label,
    varying_keys,
)
from tailkd.report.pooled import pooled_aurocs, pooled_test_answers
from tailkd.report.runs import Run, Skipped, is_baseline, is_number
from tailkd.stats import detectable_difference, sign_test

COUNTS = ("teacher_cache_hits", "teacher_failures")
WEIGHTED = "teacher_annotation_accuracy_weighted"  # the share of training weight on right teacher answers
TRAINED = "teacher_annotation_accuracy_trained"  # the share of right answers among those that train, unweighted


def write_report(runs: list[Run], skipped: list[Skipped], out: Path, sources: list[Path],
                 metric: str = "test_accuracy", baseline: str = "finetune",
                 oracle: str | None = "finetune_oracle", ignored: Sequence[str] = ()) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs, baseline, oracle)
    keys = varying_keys(groups)
    aurocs = sorted({k for r in runs for k, v in r.results.items() if k.startswith("auroc_") and v is not None},
                    key=lambda k: (k == "auroc_weight", k))
    written = {"runs.csv": out / "runs.csv", "summary.csv": out / "summary.csv"}
    _write_runs_csv(runs, written["runs.csv"])
    _write_summary_csv(groups, keys, metric, aurocs, written["summary.csv"])

    from tailkd.report.plots import (
        plot_accuracy_vs_budget,
        plot_accuracy_vs_spend,
        plot_signal_auroc,
        spend_key,
    )

    plots = {}
    path = plot_accuracy_vs_budget(groups, keys, metric, out / "accuracy_vs_budget.png")
    if path:
        plots["accuracy vs teacher budget"] = path
    spend = spend_key(groups)
    path = plot_accuracy_vs_spend(groups, keys, metric, out / "accuracy_vs_spend.png", spend)
    if path:
        plots[f"accuracy vs teacher spend in {spend.removeprefix('teacher_')} (active methods round by round)"] = path
    path = plot_signal_auroc(groups, keys, aurocs, out / "signal_auroc.png")
    if path:
        plots["signal AUROC (right vs wrong teacher annotations)"] = path
    written.update({p.name: p for p in plots.values()})

    lines = _markdown(groups, keys, metric, baseline, aurocs, runs, skipped, sources, plots, ignored)
    written["report.md"] = out / "report.md"
    written["report.md"].write_text("\n".join(lines) + "\n")
    return written


def _markdown(groups, keys, metric, baseline, aurocs, runs, skipped, sources, plots, ignored=()) -> list[str]:
    lines = ["# tailkd report", ""]
    lines.append(f"{len(runs)} runs in {len(groups)} settings, from " + ", ".join(f"`{s}`" for s in sources) + ".")
    constant = constant_settings(groups)
    if constant:
        lines.append("Same in every run: " + ", ".join(f"`{k}={v}`" for k, v in constant.items()) + ".")
    if ignored:
        # said in the report: runs that differ only there were pooled as seeds of one setting
        lines.append("Left out of every setting: " + ", ".join(f"`{k}`" for k in ignored)
                     + " (`--ignore`: runs that differ only there are seeds of one setting).")
    lines += ["", f"## {metric}", "",
              f"Mean ± std over seeds (sample std; '–' with one seed). Δ: relative to `{baseline}` at the same "
              "setting otherwise (task, student, budget, teacher). Paired: the difference to "
              f"`{baseline}` seed by seed (the same seed buys the same questions), mean ± std, its 95% "
              "percentile-bootstrap interval, and how many seeds it won / lost. Detectable: the smallest true "
              "paired difference these seeds detect with 80% power (paired t-test, two-sided 5%, at the "
              "observed spread of the differences): a smaller difference is no evidence either way. "
              "Test questions: pooled over "
              f"the seeds both have, how many this setting answered right and `{baseline}` wrong, and the "
              "reverse, with an exact sign test on those (ties carry no evidence). Commit: the source the runs "
              "came from.", ""]
    per_question = metric == "test_accuracy"  # predictions.jsonl holds the test answers behind it
    headroom = any(g.oracle is not None and g.oracle is not g for g in groups)
    if headroom:
        lines[-1:-1] = ["Share of oracle headroom: (this − baseline) / (oracle − baseline), the oracle being the "
                        "run that reads gold at the same setting (`tailkd-report --oracle`), with a 95% "
                        "percentile-bootstrap interval over the seeds all three have; '–' where the oracle "
                        "gains nothing over the baseline (no headroom to share); 'no detectable headroom' where the "
                        "oracle's own paired 95% interval over the baseline (on the same seeds) reaches 0, or one "
                        "seed has it: a share of a gain within noise is a ratio of noise.", ""]
    header = keys + ["seeds", metric, f"Δ vs {baseline}", "paired diff (won/lost)", "paired 95% CI",
                     "detectable (80% power)"] + (
        ["test questions right here / in baseline only (sign test)"] if per_question else []) + (
        ["share of oracle headroom [95% CI]"] if headroom else []) + [
        "before training", "teacher queries", "teacher tokens generated", "teacher cost USD", "wall time (min)",
        "commit"]
    rows = []
    for g in groups:
        base = is_baseline(g.setting, baseline)
        diffs = g.paired_differences(metric) if not base else []
        rows.append([g.setting.get(k, "") for k in keys] + [
            str(len(g.runs)), _pm(g.mean(metric), g.std(metric)),
            _pct(g.relative_improvement(metric)) if not base else "",
            _paired(diffs) if not base else "", _ci(diffs) if not base else "",
            _detectable(diffs) if not base else "",
        ] + ([_per_question(g) if not base else ""] if per_question else []) + (
            [_headroom(g, metric) if not base and g.oracle is not g else ""] if headroom else []) + [
            _num(g.mean(f"{metric}_before")), _num(g.mean("teacher_queries"), 1),
            _num(_mean_of_all(g, "teacher_output_tokens"), 0), _num(g.mean("teacher_cost_usd"), 4),
            _num(g.mean("runtime_s") / 60, 1), " ".join(g.commits()) or "–",
        ])
    lines += _table(header, rows)

    if aurocs:
        with_signals = [g for g in groups if any(g.values(a) for a in aurocs)]
        lines += ["", "## Signals: AUROC at ranking right teacher annotations above wrong ones", "",
                  "0.5 is chance; below 0.5 the signal points the wrong way for noise. Mean ± std over seeds. "
                  "Teacher right: the share of right answers among those bought, among those that train "
                  "unweighted (parse failures never train), and by training weight (means over seeds): a "
                  "signal helps the data where the last is above the middle one.", ""]
        # AUROC is a ranking; this column says what the weights made of it in the training data
        shares = any(g.values(WEIGHTED) for g in with_signals)
        trained = shares and all(g.values(TRAINED) for g in with_signals if g.values(WEIGHTED))
        right_keys = ["teacher_annotation_accuracy", *([TRAINED] if trained else []), WEIGHTED]
        lines += _table(keys + ["seeds"] + [a.removeprefix("auroc_") for a in aurocs]
                        + ([f"teacher right: bought{' → trained' if trained else ''} → by weight"] if shares else []),
                        [[g.setting.get(k, "") for k in keys] + [str(len(g.runs))]
                         + [_pm(g.mean(a), g.std(a)) for a in aurocs]
                         + ([_bought_and_weighted(g, right_keys)] if shares else [])
                         for g in with_signals])
        pooled = {id(g): pooled_aurocs(g) for g in with_signals if len(g.runs) > 1}
        names = [a.removeprefix("auroc_") for a in aurocs]
        if any(pooled.values()):
            lines += ["", "Pooled over the seeds' annotations (signals.jsonl): AUROC [95% percentile-bootstrap interval, "
                      "annotations resampled 1000 times], and how many annotations.", ""]
            lines += _table(keys + ["annotations"] + names,
                            [[g.setting.get(k, "") for k in keys] + [str(max((v[3] for v in pooled[id(g)].values()), default=0))]
                             + [_pooled(pooled[id(g)].get(n)) for n in names] for g in with_signals if pooled.get(id(g))])

    lines += _arte_section(groups, keys)
    lines += ["", "## Teacher spend", ""]
    total = {k: sum(g.total(k) for g in groups) for k in SPEND + COUNTS}
    counted = all(math.isfinite(_mean_of_all(g, "teacher_output_tokens")) for g in groups)
    generated = f" ({total['teacher_output_tokens']:.0f} tokens generated)" if counted else ""
    lines.append(f"Accounted over all runs: {total['teacher_queries']:.0f} queries{generated}, "
                 f"{total['teacher_cost_usd']:.4f} USD; paid by these runs: {total['teacher_paid_usd']:.4f} USD "
                 f"({total['teacher_cache_hits']:.0f} answers came from the cache, "
                 f"{total['teacher_failures']:.0f} requests failed). Cached answers count at what they cost "
                 "when bought, so runs compare at equal budget whatever the cache held.")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{title}]({path.name})" for title, path in plots.items()]
    repeated = [g for g in groups if len(set(map(str, g.seeds))) < len(g.runs)]
    if repeated:
        lines += ["", "## Repeated seeds", "",
                  "These settings have a seed run more than once (a rerun, or two folders holding the same runs); "
                  "every run counts in the mean and std above:", ""]
        lines += [f"- {label(g, keys)}: seeds {', '.join(map(str, g.seeds))}" for g in repeated]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in skipped]
    return lines


def _write_runs_csv(runs: list[Run], path: Path) -> None:
    setting_keys = sorted({k for r in runs for k in r.setting})
    result_keys = sorted({k for r in runs for k, v in r.results.items() if _scalar(v)} - set(setting_keys))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_dir"] + setting_keys + result_keys)
        for r in runs:
            writer.writerow([str(r.path)] + [r.setting.get(k, "") for k in setting_keys]
                            + [_cell(r.results.get(k)) for k in result_keys])


def _write_summary_csv(groups: list[Group], keys: list[str], metric: str, aurocs: list[str], path: Path) -> None:
    numbers = [metric, f"{metric}_before", *SPEND, *aurocs, "teacher_annotation_accuracy", WEIGHTED,
               "select_bought_by_order", TRAINED, "runtime_s"]
    setting_keys = sorted({k for g in groups for k in g.setting})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(setting_keys + ["label", "seeds", "budget"]
                        + [f"{n}_{s}" for n in numbers for s in ("mean", "std")]
                        + ["relative_improvement_pct", "paired_n", "paired_mean", "paired_std", "paired_ci_low",
                           "paired_ci_high", "paired_detectable", "questions_right_only_here", "questions_right_only_in_baseline",
                           "questions_compared", "sign_test_p", "oracle_headroom_share", "oracle_headroom_ci_low",
                           "oracle_headroom_ci_high", "commits"])
        for g in groups:
            diffs = g.paired_differences(metric)
            low, high = bootstrap_ci(diffs) if len(diffs) > 1 else (math.nan, math.nan)
            pooled = pooled_test_answers(g) if metric == "test_accuracy" else None
            questions = [*pooled, sign_test(*pooled[:2])] if pooled else ["", "", "", ""]
            share = g.headroom_share(metric) if g.oracle is not g else None
            writer.writerow([g.setting.get(k, "") for k in setting_keys]
                            + [label(g, keys), len(g.runs), _cell(g.budget())]
                            + [_cell(v) for n in numbers for v in (g.mean(n), g.std(n))]
                            + [_cell(g.relative_improvement(metric)), len(diffs),
                               _cell(statistics.fmean(diffs) if diffs else math.nan),
                               _cell(statistics.stdev(diffs) if len(diffs) > 1 else math.nan), _cell(low), _cell(high),
                               _cell(_detectable_value(diffs)),
                               *questions, *([_cell(v) for v in share] if share else ["", "", ""]),
                               " ".join(g.commits())])


def _headroom(group: Group, metric: str) -> str:
    share = group.headroom_share(metric)
    if share is None:
        return "–"
    value, low, high = share
    flag = " (no detectable headroom)" if group.headroom_within_noise(metric) else ""
    return f"{value:.2f} [{low:.2f}, {high:.2f}]{flag}"


def _per_question(group: Group) -> str:
    pooled = pooled_test_answers(group)
    if pooled is None:
        return "–"
    here, base, n = pooled
    return f"{here} / {base} of {n} (p = {sign_test(here, base):.3f})"


def _bought_and_weighted(group: Group, keys: list[str]) -> str:
    """The means of ``keys`` (right among bought, [among those that train,] by weight) over the runs
    that recorded all of them: older runs have no weighted or trained share."""
    runs = [r.results for r in group.runs if all(is_number(r.results.get(k)) for k in keys)]
    if not runs:
        return "–"
    return " → ".join(f"{statistics.fmean(r[k] for r in runs):.3f}" for k in keys)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f} ± –"


def _paired(diffs: list[float]) -> str:
    if not diffs:
        return "–"
    mean = sum(diffs) / len(diffs)
    std = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
    won, lost = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return f"{mean:+.3f} ± {'–' if math.isnan(std) else f'{std:.3f}'} ({won}/{lost})"


def _detectable_value(diffs: list[float]) -> float:
    return detectable_difference(statistics.stdev(diffs), len(diffs)) if len(diffs) > 1 else math.nan


def _detectable(diffs: list[float]) -> str:
    value = _detectable_value(diffs)
    return "–" if math.isnan(value) else f"{value:.3f}"


def _pooled(value: tuple[float, float, float, int] | None) -> str:
    return "–" if value is None else f"{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]"


def _ci(diffs: list[float]) -> str:
    if len(diffs) < 2:
        return "–"
    low, high = bootstrap_ci(diffs)
    return f"[{low:+.3f}, {high:+.3f}]"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.1f}%"


def _arte_section(groups: list[Group], keys: list[str]) -> list[str]:
    """ARTE's own evidence: how the student scored the teacher's data before and after alignment, and
    whether DPO moved the teacher towards the pairs it was given."""
    arte = [g for g in groups if g.values("preference_accuracy_drafts")]
    if not arte:
        return []
    lines = ["", "## ARTE: the student's preferences and the teacher's alignment", "",
             "Preference-set accuracy: the student's one-shot accuracy on the preference set with one drafted "
             "(before alignment) or tailored (after it: DPO's adapter, or `select`'s preferred strategy) "
             "example as its demonstration, mean ± std over seeds; tailored − drafts paired seed by seed. "
             "DPO margin: the teacher's mean log p(chosen | prompt) − log p(rejected | prompt) over the pairs, "
             "before and after DPO. Drafted: questions kept; refused "
             "for lacking the answer choices their seed questions list, in brackets (means).", ""]
    header = keys + ["seeds", "drafted (refused: no choices)", "tailored examples", "preference-set accuracy: drafts",
                     "tailored", "tailored − drafts (won/lost)", "paired 95% CI", "DPO pairs", "DPO margin before → after"]
    rows = []
    for g in arte:
        diffs = [float(r.results["preference_accuracy_tailored"]) - float(r.results["preference_accuracy_drafts"])
                 for r in g.runs if is_number(r.results.get("preference_accuracy_tailored"))
                 and is_number(r.results.get("preference_accuracy_drafts"))]
        margins = "–" if not g.values("dpo_margin_before") else (
            f"{g.mean('dpo_margin_before'):.3f} → {g.mean('dpo_margin_after'):.3f}")
        rows.append([g.setting.get(k, "") for k in keys] + [
            str(len(g.runs)), f"{_num(g.mean('drafted'), 1)} ({_num(g.mean('draft_questions_no_choices'), 1)})",
            _num(g.mean("tailored"), 1), _pm(g.mean("preference_accuracy_drafts"), g.std("preference_accuracy_drafts")),
            _pm(g.mean("preference_accuracy_tailored"), g.std("preference_accuracy_tailored")), _paired(diffs),
            _ci(diffs), _num(g.mean("dpo_pairs"), 1), margins])
    return lines + _table(header, rows)


def _mean_of_all(g: Group, key: str) -> float:
    """The mean over every run, or NaN where some run does not report ``key`` (made before it was
    counted): a mean over the others would pass for the setting's."""
    values = g.values(key)
    return statistics.fmean(values) if values and len(values) == len(g.runs) else math.nan


def _num(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else value

