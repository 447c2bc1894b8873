"""tailkd-report on synthetic multirun folders: grouping by setting, mean and std over seeds, the
relative improvement over finetune at equal budget, spend totals, plots, and the empty-folder error."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from tailkd.cli.report import main as report_main
from tailkd.report import find_runs, group_runs

# (method, signals, budget, seed) -> accuracy; AUROCs only for tail
ACCURACY = {
    ("finetune", None, 50, 0): 0.30, ("finetune", None, 50, 1): 0.34, ("finetune", None, 50, 2): 0.32,
    ("finetune", None, 100, 0): 0.40, ("finetune", None, 100, 1): 0.44, ("finetune", None, 100, 2): 0.42,
    ("tail", "all", 50, 0): 0.33, ("tail", "all", 50, 1): 0.39, ("tail", "all", 50, 2): 0.36,
    ("tail", "all", 100, 0): 0.41, ("tail", "all", 100, 1): 0.45, ("tail", "all", 100, 2): 0.40,
    ("tail", "sc", 100, 0): 0.50, ("tail", "sc", 100, 1): 0.46,
}


def make_sweep(root: Path, with_overrides: bool = True) -> None:
    """A folder shaped like multirun_scripts' output: finetune and tail in separate sub-sweeps."""
    for i, ((method, signals, budget, seed), acc) in enumerate(ACCURACY.items()):
        run = root / method / f"{i}_chain_sum_{method}_s{seed}"
        run.mkdir(parents=True)
        results = {
            "task": "chain_sum", "student": "smollm2-135m-embedded", "method": method, "seed": seed,
            "test_accuracy": acc, "test_accuracy_before": 0.13, "budget_max_queries": budget,
            "teacher_queries": budget, "teacher_cost_usd": budget * 0.001, "teacher_paid_usd": 0.0 if seed else budget * 0.001,
            "teacher_cache_hits": budget if seed else 0, "teacher_failures": 0, "teacher_error_rate": 0.4,
            "runtime_s": 60.0 * (seed + 1) + (60.0 if method == "tail" else 0.0),
        }
        overrides = [f"method={method}", f"budget.max_queries={budget}", "teacher.corruption.rate=0.4",
                     f"seed={seed}", "logger=csv"]
        if method == "tail":
            results.update(signals=["self_consistency"], signals_preset=signals,
                           auroc_self_consistency=0.6 + 0.01 * seed, auroc_weight=0.55)
            overrides.append(f"signals={signals}")
        (run / "results.json").write_text(json.dumps(results))
        if with_overrides:
            (run / ".hydra").mkdir()
            (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


@pytest.mark.parametrize("with_overrides", [True, False], ids=["hydra-overrides", "results-only"])
def test_groups_give_mean_std_and_improvement_over_finetune_at_equal_budget(tmp_path, with_overrides):
    make_sweep(tmp_path, with_overrides)
    runs, skipped = find_runs([tmp_path])
    assert len(runs) == len(ACCURACY) and not skipped
    groups = {(g.setting["method"], g.setting.get("signals"), g.setting["budget.max_queries"]): g
              for g in group_runs(runs)}
    assert set(groups) == {("finetune", None, "50"), ("finetune", None, "100"), ("tail", "all", "50"),
                           ("tail", "all", "100"), ("tail", "sc", "100")}
    for (method, signals, budget), group in groups.items():
        accs = [a for (m, s, b, _), a in ACCURACY.items() if (m, s, str(b)) == (method, signals, budget)]
        assert group.mean("test_accuracy") == pytest.approx(statistics.fmean(accs))
        assert group.std("test_accuracy") == pytest.approx(statistics.stdev(accs))
    tail_50 = groups[("tail", "all", "50")]
    assert tail_50.baseline is groups[("finetune", None, "50")]
    assert tail_50.relative_improvement("test_accuracy") == pytest.approx(100 * (0.36 - 0.32) / 0.32)
    assert groups[("tail", "sc", "100")].relative_improvement("test_accuracy") == pytest.approx(100 * (0.48 - 0.42) / 0.42)
    assert math.isnan(groups[("finetune", None, "50")].relative_improvement("test_accuracy"))


def test_report_writes_markdown_csv_and_plots(tmp_path):
    make_sweep(tmp_path)
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| finetune |  | 50 | 3 | 0.320 ± 0.020 |  |" in report
    # paired by seed: 0.33-0.30, 0.39-0.34, 0.36-0.32 -> +0.03, +0.05, +0.04
    assert "| tail | all | 50 | 3 | 0.360 ± 0.030 | +12.5% | +0.040 ± 0.010 (3/0) |" in report
    assert "| tail | all | 100 | 3 | 0.420 ± 0.026 | +0.0% | +0.000 ± 0.017 (2/1) |" in report  # +.01 +.01 -.02
    assert "0.610 ± 0.010" in report  # AUROC of self-consistency over seeds 0, 1, 2
    # what a setting costs to run: the mean wall time of its seeds (2, 3, 4 min for tail), beside the spend
    assert "| teacher cost USD | wall time (min) | commit |" in report
    assert "| 0.0500 | 3.0 | – |" in report
    for png in ("accuracy_vs_budget.png", "signal_auroc.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (tmp_path / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    sc = next(r for r in rows if r["signals"] == "sc")
    assert float(sc["test_accuracy_mean"]) == pytest.approx(0.48)
    assert sc["seeds"] == "2"
    with (tmp_path / "runs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(ACCURACY)
    # spend: 14 runs accounted; only the seed-0 runs paid
    accounted = sum(b * 0.001 for (_, _, b, _) in ACCURACY)
    paid = sum(b * 0.001 for (_, _, b, s) in ACCURACY if s == 0)
    assert f"{accounted:.4f} USD; paid by these runs: {paid:.4f} USD" in report


def test_report_skips_unfinished_runs_and_says_so(tmp_path):
    make_sweep(tmp_path)
    broken = tmp_path / "tail" / "99_broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    collect = tmp_path / "collect"
    collect.mkdir()
    (collect / "results.json").write_text(json.dumps({"task": "chain_sum", "num_annotations": 3}))
    assert report_main([str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## Skipped" in report and "99_broken" in report and "unreadable" in report
    assert "tailkd-collect run" in report


def test_empty_folder_is_one_clear_error(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tailkd-report: no finished runs") and str(tmp_path) in err
    assert not (tmp_path / "report.md").exists()
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_report_names_settings_whose_seeds_repeat(tmp_path):
    make_sweep(tmp_path / "a")
    make_sweep(tmp_path / "b")  # the same sweep twice
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## Repeated seeds" in report and "seeds 0, 0, 1, 1, 2, 2" in report
    assert "28 runs in 5 settings" in report


def test_signal_presets_of_any_tail_variant_stay_in_its_setting(tmp_path):
    from tailkd.report.runs import setting_of

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=tail_no_warmup", "signals=none", "seed=1"]))
    results = {"task": "chain_sum", "student": "tiny", "method": "tail_no_warmup", "signals": [], "signals_preset": "none"}
    assert setting_of(run, results) == {"task": "chain_sum", "student": "tiny", "method": "tail_no_warmup", "signals": "none"}
    finetune = {"task": "chain_sum", "student": "tiny", "method": "finetune"}
    assert "signals" not in setting_of(run, finetune)  # a method without signals ignores the group


def test_paired_bootstrap_interval_and_any_baseline(tmp_path):
    from tailkd.report.aggregate import bootstrap_ci

    low, high = bootstrap_ci([0.03, 0.05, 0.04])
    # every resample's mean lies between the smallest and the largest difference
    assert 0.03 - 1e-9 <= low <= 0.04 <= high <= 0.05 + 1e-9 and low < high
    assert bootstrap_ci([0.02, 0.02, 0.02]) == (0.02, 0.02)
    assert bootstrap_ci([0.03, 0.05, 0.04]) == (low, high)  # seeded: the same report every time

    make_sweep(tmp_path)
    assert report_main([str(tmp_path), "--baseline", "tail signals=all"]) == 0
    report = (tmp_path / "report.md").read_text()
    # tail sc at 100 against tail all at 100, seed by seed: 0.50-0.41, 0.46-0.45 -> +0.09, +0.01
    sc_row = next(line for line in report.splitlines() if line.startswith("| tail | sc | 100 |"))
    assert "+0.050 ± 0.057 (2/0)" in sc_row
    lo, hi = bootstrap_ci([0.09, 0.01])
    assert f"[{lo:+.3f}, {hi:+.3f}]" in sc_row
    all_row = next(line for line in report.splitlines() if line.startswith("| tail | all | 100 |"))
    assert "(" not in all_row.split("|")[7]  # the baseline is not compared with itself
    with (tmp_path / "summary.csv").open() as f:
        sc = next(r for r in csv.DictReader(f) if r["signals"] == "sc")
    assert int(sc["paired_n"]) == 2 and float(sc["paired_mean"]) == pytest.approx(0.05)
    # two seeds, differences +0.09 and +0.01 (sd 0.0566): (t.975,1 + t.80,1) x sd / sqrt(2) = (12.706 + 1.376) x 0.04
    assert float(sc["paired_detectable"]) == pytest.approx((12.706 + 1.376) * statistics.stdev([0.09, 0.01]) / 2 ** 0.5,
                                                           rel=1e-3)
    assert f"{float(sc['paired_detectable']):.3f} |" in sc_row


def test_report_carries_the_commit(tmp_path):
    make_sweep(tmp_path)
    for i, path in enumerate(sorted(tmp_path.rglob("results.json"))):
        results = json.loads(path.read_text())
        results.update(git_commit="0123456789abcdef", git_dirty=i == 0)
        path.write_text(json.dumps(results))
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "01234567 01234567+dirty" in report and report.count("| 01234567 |") >= 3


def test_a_methods_own_settings_keep_its_variants_apart(tmp_path):
    """A multirun over method.selection / method.revision (ELAD, no signals) reports one row per variant,
    each compared with finetune at the same budget."""
    from tailkd.report.runs import baseline_setting, setting_of

    def run(name, method, overrides, acc, seed):
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}", *overrides, f"seed={seed}"]))
        (folder / "results.json").write_text(json.dumps({"task": "chain_sum", "student": "tiny", "method": method,
                                                         "seed": seed, "test_accuracy": acc}))

    for seed in (0, 1):
        run(f"ft{seed}", "finetune", ["budget.max_usd=0.01"], 0.3, seed)
        run(f"a{seed}", "elad", ["budget.max_usd=0.01", "method.selection=elad", "method.revision=true"], 0.2, seed)
        run(f"b{seed}", "elad", ["budget.max_usd=0.01", "method.selection=random", "method.revision=true"], 0.4, seed)
    runs, _ = find_runs([tmp_path])
    groups = group_runs(runs)
    elad = {g.setting.get("method.selection"): g for g in groups if g.setting["method"] == "elad"}
    assert set(elad) == {"elad", "random"}
    assert elad["random"].paired_differences("test_accuracy") == pytest.approx([0.1, 0.1])
    assert baseline_setting(setting_of(tmp_path / "a0", runs[0].results))["method"] == "finetune"


def test_a_tail_baseline_is_found_across_the_signal_settings_every_tail_run_shares(tmp_path):
    """--baseline "tail signals=none" when every tail job also sets the TA and the self-consistency k
    (real_teacher_study.sh): tail all, and tail all under use=filter, pair with the tail none run of their
    TA; with two TAs each finds its own; finetune, which takes neither, has no such baseline."""
    def run(name, overrides, acc, seed):
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        method = next(o for o in overrides if o.startswith("method="))[len("method="):]
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, "budget.max_queries=100", f"seed={seed}"]))
        results = {"task": "gsm8k", "student": "tiny", "method": method, "seed": seed, "test_accuracy": acc}
        if method == "tail":
            results.update(signals_preset="x", signals=["ta_teacher"])
        (folder / "results.json").write_text(json.dumps(results))

    for seed in (0, 1):
        run(f"ft{seed}", ["method=finetune"], 0.10, seed)
        for ta, base in (("qwen", 0.20), ("small", 0.30)):
            shared = ["method=tail", f"ta={ta}", "signals.self_consistency.k=4"]
            run(f"none_{ta}{seed}", [*shared, "signals=none"], base, seed)
            run(f"all_{ta}{seed}", [*shared, "signals=all"], base + 0.01 + 0.02 * seed, seed)
            run(f"filter_{ta}{seed}", [*shared, "signals=all", "signals.use=filter"], base - 0.05, seed)
        # a tail variant of its own schedule: tail none at the default warm-up is not its baseline
        run(f"short{seed}", ["method=tail", "ta=qwen", "signals.self_consistency.k=4", "signals=all",
                             "method.warmup_fraction=0.1"], 0.5, seed)
    runs, _ = find_runs([tmp_path])
    groups = group_runs(runs, "tail signals=none")
    by = {(g.setting["method"], g.setting.get("ta"), g.setting.get("signals"), g.setting.get("signals.use")): g for g in groups}
    assert by["tail", "qwen", "all", None].paired_differences("test_accuracy") == pytest.approx([0.01, 0.03])
    assert by["tail", "small", "all", None].paired_differences("test_accuracy") == pytest.approx([0.01, 0.03])
    assert by["tail", "qwen", "all", "filter"].paired_differences("test_accuracy") == pytest.approx([-0.05, -0.05])
    assert by["tail", "qwen", "none", None].baseline is by["tail", "qwen", "none", None]
    assert by["finetune", None, None, None].baseline is None
    short = next(g for g in groups if g.setting.get("method.warmup_fraction") == "0.1")
    assert short.baseline is None
    assert report_main([str(tmp_path), "--baseline", "tail signals=none"]) == 0
    report = (tmp_path / "report.md").read_text()
    filter_row = next(line for line in report.splitlines() if "| filter |" in line and "| qwen |" in line)
    assert "-0.050 ± 0.000 (0/2)" in filter_row


def test_signal_aurocs_pooled_over_seeds_with_a_bootstrap_interval(tmp_path):
    """The report pools every seed's signals.jsonl: ta_teacher ranks every right answer first (1.0, an
    interval of one point), self_consistency is the reverse of right (0.0); the pooled AUROC equals the
    Mann-Whitney count over all annotations, not the mean of the per-seed values."""
    from tailkd.report.pooled import pooled_aurocs
    from tailkd.stats import auroc

    assert auroc([0.1, 0.3, 0.35, 0.8], [False, True, False, True]) == 0.75
    assert auroc([0.5, 0.5], [True, False]) == 0.5 and auroc([1.0], [True]) is None
    rows_by_seed = {0: [(0.9, 0.1, 0.7, True), (0.2, 0.8, 0.3, False), (0.6, 0.3, 0.2, True)],
                    1: [(0.8, 0.2, 0.1, True), (0.1, 0.9, 0.9, False), (0.3, 0.7, 0.5, False)]}
    for seed, rows in rows_by_seed.items():
        folder = tmp_path / f"tail_s{seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=tail", "signals=all", f"seed={seed}"]))
        (folder / "results.json").write_text(json.dumps({
            "task": "gsm8k", "student": "tiny", "method": "tail", "seed": seed, "test_accuracy": 0.1,
            "signals_preset": "all", "signals": ["self_consistency", "ta_teacher"],
            "auroc_ta_teacher": 1.0, "auroc_self_consistency": 0.0, "auroc_weight": 0.5}))
        (folder / "signals.jsonl").write_text("".join(json.dumps({
            "id": f"q{seed}{i}", "sample_index": 0, "teacher_correct": right, "ta_teacher": {"value": ta},
            "self_consistency": {"value": sc}, "score": score}) + "\n" for i, (ta, sc, score, right) in enumerate(rows)))
    runs, _ = find_runs([tmp_path])
    (group,) = group_runs(runs)
    pooled = pooled_aurocs(group)
    assert pooled["ta_teacher"] == (1.0, 1.0, 1.0, 6) and pooled["self_consistency"][:3] == (0.0, 0.0, 0.0)
    scores = [0.7, 0.3, 0.2, 0.1, 0.9, 0.5]
    right = [True, False, True, True, False, False]
    assert pooled["weight"][0] == pytest.approx(auroc(scores, right)) == pytest.approx(2 / 9)
    low, high = pooled["weight"][1:3]
    assert 0.0 <= low <= 2 / 9 <= high <= 1.0 and low < high
    assert "ta_student" not in pooled
    assert report_main([str(tmp_path)]) == 0
    assert "| 6 | 0.000 [0.000, 0.000] | 1.000 [1.000, 1.000] |" in (tmp_path / "report.md").read_text()
    assert "by weight" not in (tmp_path / "report.md").read_text()  # runs without the weighted share


def test_signal_section_shows_the_share_of_training_weight_on_right_answers(tmp_path):
    """Bought 50% right at each seed, 60% of what trains (parse failures never do); the weights put 70%
    and 80% of the training on right answers. A third seed from before the weighted share was recorded
    (90% bought) stays out of the means."""
    for seed, weighted in ((0, 0.7), (1, 0.8), (2, None)):
        folder = tmp_path / f"tail_s{seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=tail", "signals=all", f"seed={seed}"]))
        results = {"task": "gsm8k", "student": "tiny", "method": "tail", "seed": seed, "test_accuracy": 0.1,
                   "signals_preset": "all", "signals": ["ta_teacher"], "auroc_ta_teacher": 0.7, "auroc_weight": 0.7,
                   "teacher_annotation_accuracy": 0.5 if weighted else 0.9}
        if weighted is not None:
            results["teacher_annotation_accuracy_weighted"] = weighted
            results["teacher_annotation_accuracy_trained"] = 0.6
        (folder / "results.json").write_text(json.dumps(results))
    assert report_main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "teacher right: bought → trained → by weight" in text
    assert "| 0.700 ± 0.000 | 0.700 ± 0.000 | 0.500 → 0.600 → 0.750 |" in text
    (summary,) = csv.DictReader((tmp_path / "summary.csv").open())
    assert float(summary["teacher_annotation_accuracy_weighted_mean"]) == pytest.approx(0.75)


def test_per_question_comparison_pools_the_seeds_test_answers_with_a_sign_test(tmp_path):
    """Three seeds of 0-3% accuracy give a bootstrap over three numbers; the test answers give more:
    right here only 3 times, in finetune only once (over the seeds both have) -> exact sign test p = 0.625."""
    right = {("tail", 0): {"q1", "q2", "q3"}, ("finetune", 0): {"q3"},
             ("tail", 1): {"q1"}, ("finetune", 1): {"q2"}, ("finetune", 2): {"q1", "q2"}}
    for method in ("tail", "finetune"):
        for seed in (0, 1, 2):
            folder = tmp_path / method / f"{seed}_gsm8k_{method}_s{seed}"
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}", f"seed={seed}"]))
            got = right.get((method, seed), set())
            (folder / "results.json").write_text(json.dumps({
                "task": "gsm8k", "student": "tiny", "method": method, "seed": seed, "test_accuracy": len(got) / 4}))
            if (method, seed) != ("tail", 2):  # a run without predictions: its seed is left out
                (folder / "predictions.jsonl").write_text("".join(
                    json.dumps({"id": q, "correct": q in got}) + "\n" for q in ("q1", "q2", "q3", "q4")))
    from tailkd.stats import sign_test

    assert sign_test(3, 1) == pytest.approx(0.625) and sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    tail_row = next(line for line in report.splitlines() if line.startswith("| tail |"))
    assert "3 / 1 of 8 (p = 0.625)" in tail_row
    with (tmp_path / "summary.csv").open() as f:
        tail = next(r for r in csv.DictReader(f) if r["method"] == "tail")
    assert (tail["questions_right_only_here"], tail["questions_right_only_in_baseline"]) == ("3", "1")
    assert float(tail["sign_test_p"]) == pytest.approx(0.625)


def test_a_setting_that_differs_by_seed_by_design_is_left_out_with_ignore(tmp_path, capsys):
    """Each seed replays its own collection (teacher.path=.../collect_s<seed>/annotations.jsonl): without
    --ignore every run is a setting of its own; with it the seeds pair up and the report says what it
    left out."""
    for seed in (0, 1, 2):
        for method, acc in (("finetune", 0.30 + 0.01 * seed), ("finetune_oracle", 0.35 + 0.02 * seed)):
            folder = tmp_path / f"{method}_s{seed}"
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
                [f"method={method}", "teacher=recorded", f"teacher.path=/c/collect_s{seed}/annotations.jsonl",
                 f"seed={seed}"]))
            (folder / "results.json").write_text(json.dumps({"task": "commonsense_qa", "student": "tiny",
                                                             "method": method, "seed": seed, "test_accuracy": acc}))
    assert len(group_runs(find_runs([tmp_path])[0])) == 6
    groups = {g.setting["method"]: g for g in group_runs(find_runs([tmp_path], ignore=["teacher.path"])[0])}
    assert set(groups) == {"finetune", "finetune_oracle"}
    assert groups["finetune_oracle"].paired_differences("test_accuracy") == pytest.approx([0.05, 0.06, 0.07])
    assert "teacher.path" not in groups["finetune"].setting and groups["finetune"].setting["teacher"] == "recorded"

    assert report_main([str(tmp_path), "--ignore", "teacher.path"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "6 runs in 2 settings" in report and "Left out of every setting: `teacher.path`" in report


def test_ignoring_a_setting_no_run_has_is_one_clear_error(tmp_path, capsys):
    make_sweep(tmp_path)
    assert report_main([str(tmp_path), "--ignore", "teacher.pth"]) == 2
    err = capsys.readouterr().err
    assert "--ignore teacher.pth" in err and "no run" in err


def test_overrides_read_as_given_not_as_hydra_escaped_them(tmp_path):
    """A multirun records `${seed}` in an override as `$\\{seed\\}` (Hydra escapes its grammar's special
    characters); the report shows the value as the user wrote it, and a run made without -m (recorded
    unescaped) is the same setting."""
    for seed, escaped in ((0, True), (1, True), (2, False)):
        folder = tmp_path / f"finetune_s{seed}"
        (folder / ".hydra").mkdir(parents=True)
        path = r"/c/collect_s$\{seed\}/a\=b.jsonl" if escaped else "/c/collect_s${seed}/a=b.jsonl"
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            ["method=finetune", f"teacher.path={path}", f"seed={seed}"]))
        (folder / "results.json").write_text(json.dumps({"task": "commonsense_qa", "student": "tiny",
                                                         "method": "finetune", "seed": seed,
                                                         "test_accuracy": 0.3}))
    runs = find_runs([tmp_path])[0]
    assert {r.setting["teacher.path"] for r in runs} == {"/c/collect_s${seed}/a=b.jsonl"}
    assert len(group_runs(runs)) == 1

    assert report_main([str(tmp_path)]) == 0
    assert "`teacher.path=/c/collect_s${seed}/a=b.jsonl`" in (tmp_path / "report.md").read_text()


def test_a_spend_curve_pairs_spend_and_accuracy_of_the_same_seeds(tmp_path):
    """ELAD's round-by-round points average the seeds tested after that round: with
    method.test_every_round=false a round's spend is not averaged with other seeds' accuracy."""
    from tailkd.report.aggregate import Group
    from tailkd.report.plots import spend_curves
    from tailkd.report.runs import Run

    def elad(seed, rounds):
        return Run(tmp_path / str(seed), {"seed": seed, "test_accuracy": rounds[-1]["test_accuracy"],
                                          "teacher_cost_usd": rounds[-1]["teacher_cost_usd"], "rounds": rounds})

    tested = elad(0, [{"round": 1, "teacher_cost_usd": 1.0, "test_accuracy": 0.2},
                      {"round": 2, "teacher_cost_usd": 2.0, "test_accuracy": 0.4}])
    last_only = elad(1, [{"round": 1, "teacher_cost_usd": 3.0},
                         {"round": 2, "teacher_cost_usd": 4.0, "test_accuracy": 0.6}])
    group = Group({"method": "elad", "task": "chain_sum"}, [tested, last_only])
    curves = spend_curves([group], ["method", "task"], "test_accuracy")
    assert {panel: dict(lines) for panel, lines in curves.items()} == {"task=chain_sum": {"elad": [(1.0, 0.2), (3.0, 0.5)]}}


@pytest.mark.parametrize("cost, axis", [(0.0, "queries"), (0.5, "cost_usd")])
def test_the_spend_curve_counts_queries_when_no_run_spent_money(tmp_path, cost, axis):
    """A local or recorded teacher costs 0 USD an answer: in USD every ELAD round sat at x = 0."""
    from tailkd.report.aggregate import Group
    from tailkd.report.plots import spend_curves, spend_key
    from tailkd.report.runs import Run

    rounds = [{"round": r, "teacher_queries": 10 * r, "teacher_cost_usd": cost * r, "test_accuracy": 0.1 * r}
              for r in (1, 2)]
    run = Run(tmp_path / "0", {"seed": 0, "test_accuracy": 0.2, "teacher_queries": 20, "teacher_output_tokens": 123,
                               "teacher_cost_usd": cost * 2, "rounds": rounds})
    groups = [Group({"method": "elad", "task": "chain_sum"}, [run])]
    assert spend_key(groups) == f"teacher_{axis}"
    [[points]] = [lines.values() for lines in spend_curves(groups, ["method", "task"], "test_accuracy",
                                                              spend_key(groups)).values()]
    assert len({x for x, _ in points}) == 2  # the rounds apart on the axis

    folder = tmp_path / "elad_s0"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=elad", "seed=0"]))
    (folder / "results.json").write_text(json.dumps({"task": "chain_sum", "student": "tiny", "method": "elad",
                                                     **run.results}))
    assert report_main([str(folder)]) == 0
    report = (folder / "report.md").read_text()
    assert f"accuracy vs teacher spend in {axis}" in report
    header, _, row = [line.split(" | ") for line in report.splitlines() if line.startswith("| method")
                      or line.startswith("|---") or line.startswith("| elad")][:3]
    assert row[header.index("teacher tokens generated")] == "123"  # what a local teacher's compute goes with
    assert "20 queries (123 tokens generated)" in report


def test_generated_tokens_are_not_averaged_over_the_runs_that_happen_to_count_them(tmp_path):
    """A run made before the count has no teacher_output_tokens: a mean over the other seeds would pass
    for the setting's, and so would a total over some runs."""
    for seed, tokens in ((0, 100), (1, None)):
        folder = tmp_path / f"finetune_s{seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=finetune", f"seed={seed}"]))
        (folder / "results.json").write_text(json.dumps({
            "task": "chain_sum", "student": "tiny", "method": "finetune", "seed": seed, "test_accuracy": 0.3,
            "teacher_queries": 10, **({"teacher_output_tokens": tokens} if tokens else {})}))
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    header, _, row = [line.split(" | ") for line in report.splitlines() if line.startswith("|")][:3]
    assert row[header.index("teacher tokens generated")] == "–"
    assert "Accounted over all runs: 20 queries, " in report and "tokens generated)" not in report


@pytest.mark.parametrize("written", ["False", "false"])
def test_a_baseline_with_a_boolean_setting_matches_as_hydra_recorded_it(tmp_path, written):
    """A multirun records method.revision=false as `method.revision=False`; a --baseline typed as on the
    command line compared every row with nothing."""
    for seed in (0, 1):
        for revision, accuracy in ((written, 0.3), ("True" if written == "False" else "true", 0.2 + seed / 100)):
            folder = tmp_path / f"elad_{revision}_s{seed}"
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
                ["method=elad", f"method.revision={revision}", f"seed={seed}"]))
            (folder / "results.json").write_text(json.dumps({"task": "chain_sum", "student": "tiny", "method": "elad",
                                                             "seed": seed, "test_accuracy": accuracy}))
    assert report_main([str(tmp_path), "--baseline", "elad method.revision=false"]) == 0
    rows = [line.split(" | ") for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("|")]
    header, revised = rows[0], next(r for r in rows[2:] if r[1] == "true")
    assert revised[header.index("paired diff (won/lost)")] == "-0.095 ± 0.007 (0/2)"


def test_arte_runs_get_their_preference_accuracy_before_and_after_alignment_and_dpo_margins(tmp_path):
    """Issue 24 asks for preference-set accuracy before and after alignment and the DPO margins: the
    report pairs them seed by seed and leaves the other methods out of that table."""
    arte = {0: (0.30, 0.40, 30.0, 32.0), 1: (0.25, 0.30, 31.0, 34.0), 2: (0.35, 0.35, 29.0, 29.5)}
    for seed, (drafts, tailored, before, after) in arte.items():
        for align in ("dpo", "select"):
            folder = tmp_path / f"arte_{align}_s{seed}"
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
                ["method=arte", f"method.align={align}", f"seed={seed}"]))
            dpo = {"dpo_pairs": 20 + seed, "dpo_margin_before": before, "dpo_margin_after": after} if align == "dpo" else {}
            (folder / "results.json").write_text(json.dumps({
                "task": "chain_sum", "student": "tiny", "method": "arte", "seed": seed, "test_accuracy": 0.3,
                "align": align, "drafted": 20, "draft_questions_no_choices": 4 + seed, "tailored": 50,
                "preference_accuracy_drafts": drafts, "preference_accuracy_tailored": tailored, **dpo}))
        folder = tmp_path / f"finetune_s{seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=finetune", f"seed={seed}"]))
        (folder / "results.json").write_text(json.dumps({"task": "chain_sum", "student": "tiny", "method": "finetune",
                                                         "seed": seed, "test_accuracy": 0.3}))
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    section = report.split("## ARTE", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("|")]
    header = rows[0]
    body = {r[1]: dict(zip(header, r)) for r in rows[2:]}
    assert set(body) == {"dpo", "select"}  # finetune has no preferences
    dpo = body["dpo"]
    assert dpo["drafted (refused: no choices)"] == "20.0 (5.0)"
    assert dpo["preference-set accuracy: drafts"] == "0.300 ± 0.050"
    assert dpo["tailored"] == "0.350 ± 0.050"
    assert dpo["tailored − drafts (won/lost)"] == "+0.050 ± 0.050 (2/0)"
    assert dpo["DPO margin before → after"] == "30.000 → 31.833"
    assert body["select"]["DPO margin before → after"] == "–"
