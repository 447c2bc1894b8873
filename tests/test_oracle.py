"""The oracle references: signals=oracle and method=finetune_oracle keep only the teacher's right
answers, method=finetune_gold trains on gold answers, and tailkd-report shows each method's share of the
oracle's headroom over finetune."""

from __future__ import annotations

import json

import pytest
import yaml
from test_teacher_text import CQA, ROW

from tailkd.cli.report import main as report_main
from tailkd.methods.finetune import oracle_annotations
from tailkd.report import find_runs, group_runs
from tailkd.signals import SignalSettings, weigh
from tailkd.signals.measure import Measured
from tailkd.signals.weigh import signal_row
from tailkd.teachers.annotation import Annotation
from tailkd.training.records import records_from_annotations, trainable

GOLD = {"q0": "A", "q1": "B", "q2": "C"}


def _annotations() -> list[Annotation]:
    # right, wrong, unparsed
    return [Annotation("q0", "", "", "A table holds it.", "A", 0, 0, 0.0, "recorded", "m"),
            Annotation("q1", "", "", "A doorway lets light in.", "C", 0, 0, 0.0, "recorded", "m"),
            Annotation("q2", "", "", "Either.", None, 0, 0, 0.0, "recorded", "m", parse="hedge")]


def _questions():
    return {i: CQA.example_from_row({**ROW, "id": i, "answerKey": a}, i, "t") for i, a in GOLD.items()}


def test_the_oracle_signal_weighs_right_answers_one_and_wrong_ones_zero():
    from pathlib import Path

    import yaml as _yaml

    conf = Path(__file__).resolve().parents[1] / "conf" / "signals"
    preset = {**_yaml.safe_load((conf / "all.yaml").read_text()), **_yaml.safe_load((conf / "oracle.yaml").read_text())}
    settings = SignalSettings.from_cfg(preset)
    assert settings.enabled == ("oracle",)
    measured = [Measured(a, correct=a.answer == GOLD[a.example_id]) for a in _annotations()]
    weighed = weigh(settings, measured)
    assert weighed.weights == [1.0, 0.0, 0.0]
    # its line of signals.jsonl (a TAiL run with signals=oracle died here after its warm-up: KeyError)
    rows = [signal_row(m, weighed, i, m.correct, w) for i, (m, w) in enumerate(zip(measured, weighed.weights))]
    assert [r["oracle"]["value"] for r in rows] == [1.0, 0.0, 0.0] and [r["weight"] for r in rows] == [1.0, 0.0, 0.0]


def test_finetune_oracle_trains_on_the_right_answers_only():
    records = records_from_annotations(trainable(oracle_annotations(_annotations(), GOLD, "filter")), CQA, _questions())
    assert [r.id for r in records] == ["q0"]


def test_finetune_gold_trains_every_question_on_its_gold_answer_with_the_teachers_rationale_where_right():
    records = records_from_annotations(trainable(oracle_annotations(_annotations(), GOLD, "gold")), CQA, _questions())
    targets = {r.id: r.target for r in records}
    assert set(targets) == {"q0", "q1", "q2"}  # the unparsed one too: gold needs no parse
    assert targets["q0"] == " A table holds it. The answer is (A)."
    assert targets["q1"] == " The answer is (B)." and targets["q2"] == " The answer is (C)."  # no wrong rationale


def _run(root, name, method, seed, accuracy, extra=()):
    folder = root / f"{name}_s{seed}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}", f"seed={seed}", *extra]))
    results = {"task": "commonsense_qa", "student": "s", "method": method, "seed": seed, "test_accuracy": accuracy}
    if method == "tail":
        results["signals_preset"] = extra[0].split("=")[1]
    (folder / "results.json").write_text(json.dumps(results))


def test_the_report_shows_each_methods_share_of_the_oracle_headroom(tmp_path):
    for seed, (ft, oracle, half, none) in enumerate([(0.30, 0.40, 0.35, 0.30), (0.32, 0.40, 0.36, 0.31),
                                                     (0.28, 0.38, 0.33, 0.29)]):
        _run(tmp_path, "ft", "finetune", seed, ft)
        _run(tmp_path, "or", "finetune_oracle", seed, oracle)
        _run(tmp_path, "half", "tail", seed, half, ["signals=all"])
        _run(tmp_path, "none", "tail", seed, none, ["signals=none"])
    groups = {(g.setting["method"], g.setting.get("signals")): g for g in group_runs(find_runs([tmp_path])[0])}
    share, low, high = groups[("tail", "all")].headroom_share("test_accuracy")
    assert share == pytest.approx(0.5) and low <= share <= high
    assert groups[("tail", "none")].headroom_share("test_accuracy")[0] == pytest.approx(0.0, abs=1e-9)
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "share of oracle headroom" in report and "0.50 [" in report


def test_no_headroom_is_said_not_divided_by():
    from tailkd.report.aggregate import _ratio_of_means

    assert _ratio_of_means([(0.01, 0.0), (0.02, -0.01)]) is None


def test_a_share_of_an_oracle_gain_within_noise_is_flagged(tmp_path):
    # the oracle gains +0.006 on average but loses at two seeds (as on the testbed at 4 epochs): a share of
    # that is a ratio of noise, and the report says so instead of printing it bare
    for seed, (ft, oracle, tail) in enumerate([(0.30, 0.33, 0.31), (0.32, 0.30, 0.33), (0.28, 0.30, 0.27),
                                               (0.31, 0.29, 0.32), (0.30, 0.32, 0.30)]):
        _run(tmp_path, "ft", "finetune", seed, ft)
        _run(tmp_path, "or", "finetune_oracle", seed, oracle)
        _run(tmp_path, "all", "tail", seed, tail, ["signals=all"])
    assert report_main([str(tmp_path)]) == 0
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| tail"))
    assert "no detectable headroom" in row
    # where the oracle wins at every seed the share stands alone
    clear = tmp_path / "clear"
    for seed, (ft, oracle, tail) in enumerate([(0.30, 0.40, 0.35), (0.32, 0.40, 0.36), (0.28, 0.38, 0.33)]):
        _run(clear, "ft", "finetune", seed, ft)
        _run(clear, "or", "finetune_oracle", seed, oracle)
        _run(clear, "all", "tail", seed, tail, ["signals=all"])
    assert report_main([str(clear)]) == 0
    row = next(line for line in (clear / "report.md").read_text().splitlines() if line.startswith("| tail"))
    assert "0.50 [" in row and "no detectable headroom" not in row


def test_the_flag_reads_the_oracle_on_the_seeds_the_share_uses(tmp_path):
    # the oracle ran 5 seeds and the method 3: on those 3 the oracle wins clearly, so their share stands
    # alone, whatever the oracle's other seeds did
    for seed, (ft, oracle) in enumerate([(0.30, 0.40), (0.32, 0.40), (0.28, 0.38), (0.31, 0.25), (0.30, 0.22)]):
        _run(tmp_path, "ft", "finetune", seed, ft)
        _run(tmp_path, "or", "finetune_oracle", seed, oracle)
        if seed < 3:
            _run(tmp_path, "all", "tail", seed, ft + (oracle - ft) / 2, ["signals=all"])
    groups = {(g.setting["method"], g.setting.get("signals")): g for g in group_runs(find_runs([tmp_path])[0])}
    assert not groups[("tail", "all")].headroom_within_noise("test_accuracy")
    assert report_main([str(tmp_path)]) == 0
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| tail"))
    assert "0.50 [" in row and "no detectable headroom" not in row
