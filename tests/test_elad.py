"""ELAD: steps, step-answer trajectories and uncertainties on hand-made explanations, selection order,
the simulated revision, per-round spend against the cap, revision through the API, smoke runs."""

from __future__ import annotations

import json

import pytest

from tailkd.errors import ConfigError
from tailkd.methods.elad import Elad
from tailkd.signals.explanations import Explained, changes, disagreement, entropy, explain, removal_flips
from tailkd.tasks import Example
from tailkd.tasks.rationale import split_steps
from tailkd.teachers import Annotation
from tailkd.teachers.backends.protocol import TeacherRequest
from tailkd.teachers.backends.simulated import SimulatedBackend

from helpers import chain_task, tiny_student
from test_cli import _jsonl, train
from test_teacher_openai import openai_overrides

REVISION_PROMPT = "Fix: {{ question }} / {{ explanation }}"


def test_steps_are_sentences_or_lines():
    assert split_steps("12 + 7 = 19. 19 - 3 = 16.") == ["12 + 7 = 19.", "19 - 3 = 16."]
    assert split_steps("It costs 2.5 dollars. So 2 of them cost 5.") == ["It costs 2.5 dollars.", "So 2 of them cost 5."]
    assert split_steps("First: 3 + 4 = 7\nThen: 7 x 2 = 14", "line") == ["First: 3 + 4 = 7", "Then: 7 x 2 = 14"]
    assert split_steps("Why? Because 2 + 2 = 4!\n\nDone") == ["Why?", "Because 2 + 2 = 4!", "Done"]
    assert split_steps("   ") == [] and split_steps(None) == []


def test_uncertainties_on_hand_made_trajectories():
    assert changes(["3", "3", "3"]) == 0.0  # every prefix leads to the same answer
    assert changes([None, "19", "16"]) == 1.0  # it changes after every step
    assert changes(["5", "16", "16", "16"]) == pytest.approx(1 / 3)
    assert changes(["5"]) == 1.0  # no steps: nothing supports the answer
    assert removal_flips(["16", "20", "16"], "16") == pytest.approx(1 / 3)
    assert disagreement(["16", "16", "15", None]) == 0.5 and disagreement(["1", "1"]) == 0.0
    assert entropy(["1", "1", "1", "1"]) == 0.0 and entropy(["1", "2", "3", "4"]) == pytest.approx(1.0)
    assert 0 < entropy(["1", "1", "2", "2"]) < 1


def test_the_step_answers_are_read_after_each_prefix(monkeypatch):
    """With a stub student that 'answers' the last number it was shown, the trajectory is exact."""
    import tailkd.signals.explanations as X

    task = chain_task()
    example = Example("q", "What is 12 + 7 - 3?", "16")

    def generate(student, prompts, max_new_tokens, **kw):
        out = []
        for p in prompts:
            if p.endswith("The answer is"):
                shown = p.split("Answer:", 1)[1]
                numbers = [t.strip(".") for t in shown.split() if t.strip(".").lstrip("-").isdigit()]
                out.append(f" {numbers[-1] if numbers else 0}.")
            else:
                out.append("12 + 7 = 19. 19 - 3 = 16. The answer is 16.")
        return out

    monkeypatch.setattr(X, "generate_texts", generate)
    [e] = explain(None, task, [example], stop=[], batch_size=4, k=0)
    assert e.steps == ["12 + 7 = 19.", "19 - 3 = 16."] and e.final_answer == "16"
    assert e.step_answers == ["0", "19", "16"]  # nothing shown, after step 1, after step 2
    assert e.within == 1.0
    [r] = explain(None, task, [example], stop=[], batch_size=4, k=0, variant="removal")
    assert r.step_answers == ["16", "16", "19"] and r.within == 0.5  # all steps, without step 1, without step 2


def test_an_explanation_that_only_names_an_answer_has_no_step_to_revise(monkeypatch):
    """An untrained student writes "(A)": asked to revise that, the embedded Qwen 1.5B confirmed the
    student's answer on 64 of 77 revisions (docs/results.md). An answer alone gets a fresh rationale."""
    import tailkd.signals.explanations as X
    from tailkd.tasks import Task

    from helpers import task_cfg

    task = Task(task_cfg("commonsense_qa"))
    example = Example("q", "Where is it cold? Answer choices: (A) fridge (B) oven", "A", choices={"A": "fridge", "B": "oven"})
    outputs = iter(["(A)", "(B) oven", "oven", "The answer must be cold. Only a fridge is. The answer is (A)."])
    monkeypatch.setattr(X, "generate_texts", lambda student, prompts, n, **kw: [
        next(outputs) if not p.endswith("The answer is") else " (A)." for p in prompts])
    explained = [explain(None, task, [example], stop=[], batch_size=4, k=0)[0] for _ in range(4)]
    assert [e.steps for e in explained] == [[], [], [], ["The answer must be cold.", "Only a fridge is."]]
    assert [e.usable for e in explained] == [False, False, False, True]


def test_the_student_final_answer_is_read_with_the_question_choices(monkeypatch):
    """A student that names its choice by text ("... The answer is oven.") chose (B): read without the
    question's choices its final answer was None, so a revision could never count as agreeing with it."""
    import tailkd.signals.explanations as X
    from tailkd.tasks import Task

    from helpers import task_cfg

    task = Task(task_cfg("commonsense_qa"))
    example = Example("q", "Where is it hot? Answer choices: (A) fridge (B) oven", "B", choices={"A": "fridge", "B": "oven"})
    monkeypatch.setattr(X, "generate_texts", lambda student, prompts, n, **kw: [
        "Ovens heat food. The answer is oven." if not p.endswith("The answer is") else " oven." for p in prompts])
    [e] = explain(None, task, [example], stop=[], batch_size=4, k=0)
    assert e.final_answer == "B" and e.steps == ["Ovens heat food."]


def _explained(uncertain: dict[str, tuple[float, float, float]]):
    return [Explained(Example(i, f"What is {i}?", "1"), "1 + 1 = 2.", ["1 + 1 = 2."], [], "2", [],
                      within=w, across=a, entropy=h) for i, (w, a, h) in uncertain.items()]


@pytest.mark.parametrize("selection, order", [("elad", ["c", "a", "b", "d"]), ("answer_entropy", ["d", "b", "a", "c"]),
                                              ("random", ["a", "b", "c", "d"])])
def test_selection_order_on_known_uncertainties(monkeypatch, selection, order):
    import tailkd.methods.elad as E

    known = {"a": (0.5, 0.5, 0.2), "b": (0.0, 0.5, 0.6), "c": (1.0, 0.5, 0.1), "d": (0.0, 0.0, 0.9)}
    monkeypatch.setattr(E, "explain", lambda *a, **k: _explained(known))
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"trainer": {"eval_batch_size": 4}, "seed": 0})
    elad = Elad(selection=selection, revision_prompt=REVISION_PROMPT)
    ranked, _ = elad.rank(cfg, None, chain_task(), [Example(i, i, "1") for i in "abcd"], [], 1)
    assert [e.id for e in ranked] == order


def test_simulated_revision_keeps_the_correct_prefix_and_fixes_the_first_wrong_step():
    task = chain_task()
    example = Example("q1", "What is 12 + 7 - 3 + 5?", "21", "12 + 7 = 19. 19 - 3 = 16. 16 + 5 = 21.")
    teacher = SimulatedBackend({"model": "sim", "seed": 0, "corruption": {"rate": 0.0}})
    teacher.prepare(task, [example])
    text, kind = teacher.revise(example, task, "12 + 7 = 19. 19 - 3 = 15. 15 + 5 = 20. The answer is 20.")
    assert kind is None and text == "12 + 7 = 19. 19 - 3 = 16. 16 + 5 = 21. The answer is 21."
    text, _ = teacher.revise(example, task, "12 + 7 = 19. 19 - 3 = 16. 16 + 5 = 21. The answer is 21.")
    assert text == "12 + 7 = 19. 19 - 3 = 16. 16 + 5 = 21. The answer is 21."  # right throughout: unchanged
    # through the backend interface: the request carries the explanation in its context
    request = TeacherRequest("q1", (("user", "fix it"),), (), 0, (("revise", "12 + 7 = 20. The answer is 20."),))
    [completion] = teacher.complete([request])
    assert completion.text.startswith("12 + 7 = 19.")
    # corruption touches only what the teacher wrote, not the student's kept prefix
    noisy = SimulatedBackend({"model": "sim", "seed": 0, "corruption": {"rate": 1.0, "kinds": {"wrong_step": 1.0}}})
    noisy.prepare(task, [example])
    text, kind = noisy.revise(example, task, "12 + 7 = 19. 19 - 3 = 16. 16 + 6 = 22.")
    assert kind in ("wrong_step", "wrong_answer") and text.startswith("12 + 7 = 19. 19 - 3 = 16.")


def test_the_revision_audit_counts_revisions_that_keep_the_students_answer_and_steps():
    """A teacher that copies the student's explanation (the embedded Qwen 1.5B did on 16 of 16 in a
    pilot) is told apart from one that keeps the right prefix and corrects the rest; fresh rationales
    bought for explanations without steps are not revisions."""
    student = "12 + 7 = 19. 19 - 3 = 15. The answer is 15."

    def explained(i, text, answer):
        return Explained(Example(i, "What is 12 + 7 - 3?", "16"), text, split_steps(text), [], answer, [])

    def bought(i, text, answer, cut_at=None):
        return Annotation(i, "p", text, None, answer, 10, 10, 0.0, "sim", "sim", cut_at=cut_at)

    seen = {"copy": explained("copy", student, "15"), "fixed": explained("fixed", student, "15"),
            "same_answer": explained("same_answer", student, "15"), "empty": explained("empty", "", None),
            "cut": explained("cut", student, "15")}
    new = [bought("copy", "12 + 7 = 19.  19 - 3 = 15. the answer is 15", "15"),
           bought("fixed", "12 + 7 = 19. 19 - 3 = 16. The answer is 16.", "16"),
           bought("same_answer", "Subtract first. The answer is 15.", "15"),
           bought("empty", "12 + 7 = 19. 19 - 3 = 16. The answer is 16.", "16"),
           bought("cut", "12 + 7 = 19. 19 - 3 = 15.\n\nQuestion: 1 + 1? The answer is 2.", "15", cut_at=26)]
    audit = Elad(revision_prompt=REVISION_PROMPT).revision_audit(new, seen)
    assert audit == {"fallback_fresh": 1, "revisions": 4, "revisions_agree": 3, "revisions_keep_all_steps": 1}
    assert Elad(revision=False).revision_audit(new, seen) == {"fallback_fresh": 0}


def test_smoke_run_writes_rounds_selections_and_revisions(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "method=elad", "logger=csv", "budget.max_queries=null",
                 "budget.max_usd=0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and results["test_accuracy"] == rounds[-1]["test_accuracy"]
    for r in rounds:  # round r may spend up to r/2 of the 0.01 USD
        assert r["teacher_cost_usd"] <= 0.01 * r["round"] / 2 + 1e-9
    ledger = _jsonl(tmp_path / "ledger.jsonl")
    assert sum(e["cost_usd"] for e in ledger) == pytest.approx(rounds[-1]["teacher_cost_usd"], abs=1e-5)
    assert results["spend_by_phase"]["round1"]["cost_usd"] + results["spend_by_phase"]["round2"]["cost_usd"] == \
        pytest.approx(results["teacher_cost_usd"], abs=1e-5)
    selected = _jsonl(tmp_path / "round1" / "selected.jsonl")
    assert len(selected) == rounds[0]["bought"] > 0
    assert all({"explanation", "step_answers", "uncertainty", "revised"} <= set(row) for row in selected)
    uncertainties = [row["uncertainty"] for row in selected]
    assert uncertainties == sorted(uncertainties, reverse=True)  # bought most uncertain first
    revised = [row for row in selected if row["steps"]]  # the others were fresh rationales
    assert rounds[0]["revisions"] == len(revised) == rounds[0]["bought"] - rounds[0]["fallback_fresh"]
    assert rounds[0]["revisions_agree"] == sum(row["revised_answer"] == row["final_answer"] for row in revised)
    assert results["revisions"] == sum(r["revisions"] for r in rounds)


@pytest.mark.parametrize("train_size, tested", [(48, [False, True]), (8, [True])])
def test_testing_only_after_the_last_round_still_tests_the_final_student(tmp_path, train_size, tested):
    """With test_every_round=false only the final student is tested, also when the pool runs out
    before the last round (8 questions: round 1 buys them all and round 2 has nothing left to buy)."""
    proc = train(tmp_path, "experiment=smoke", "method=elad", "logger=csv", "method.revision=false",
                 "budget.max_queries=24", "method.rounds=2", "method.test_every_round=false",
                 f"task.train_size={train_size}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rounds = results["rounds"]
    assert ["test_accuracy" in r for r in rounds] == tested
    assert results["test_accuracy"] == rounds[-1]["test_accuracy"]
    log = (tmp_path / "train.log").read_text()
    assert log.count("test accuracy:") == 1 and log.count("accuracy not tested") == 1  # round 1's line
    assert len(_jsonl(tmp_path / "predictions.jsonl")) == 16


def test_every_round_explains_with_the_stop_strings_of_what_the_student_trained_on(tmp_path, monkeypatch):
    """A stop string found inside the targets the student trained on ("=" in every chain_sum rationale)
    no longer cuts its explanations from round 2 on, tested each round or not (testing used to be what
    updated them, so rounds left untested cut the student's explanations where it writes on)."""
    from hydra import compose, initialize_config_dir

    from tailkd.cli.train import build_recipe
    from tailkd.config import config_dir

    seen, rank = [], Elad.rank

    def spy(self, cfg, student, task, candidates, stop, round_):
        seen.append(list(stop))
        return rank(self, cfg, student, task, candidates, stop, round_)

    monkeypatch.setattr(Elad, "rank", spy)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "method=elad", "method.revision=false", "logger=csv",
                                          "method.rounds=2", "method.test_every_round=false",
                                          "task.until=['=','Question:']"])
    build_recipe(cfg).run(cfg, tmp_path)
    assert seen == [["=", "Question:"], ["Question:"]]


def test_a_stop_string_inside_the_targets_is_warned_about_once_a_round(tmp_path, caplog):
    """Each round trains on new data, so its stop strings are worked out again; the round's test uses
    the same ones and used to repeat the warning."""
    from hydra import compose, initialize_config_dir

    from tailkd.cli.train import build_recipe
    from tailkd.config import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "method=elad", "method.revision=false", "logger=csv",
                                          "method.rounds=2", "method.test_every_round=true",
                                          "task.until=['=','Question:']"])
    with caplog.at_level("WARNING", logger="tailkd.methods.pipeline"):
        build_recipe(cfg).run(cfg, tmp_path)
    assert caplog.text.count("occur inside training targets") == 2


def test_revision_through_the_api_costs_more_than_fresh_rationales(fake, api_key, tmp_path):
    server = fake()
    common = ["experiment=smoke", "method=elad", "logger=csv", *openai_overrides(server), "budget.max_queries=16",
              "method.rounds=1"]
    revised = train(tmp_path / "rev", *common)
    assert revised.returncode == 0, revised.stderr[-3000:]
    prompts = server.prompts()
    assert len(prompts) == 16 and all(p.startswith("Here is a question and a student's step-by-step answer")
                                      for p in prompts)
    selected = _jsonl(tmp_path / "rev" / "round1" / "selected.jsonl")
    for row in selected:  # every explanation rode along in one revision prompt (they arrive in any order)
        assert any(row["explanation"].strip() in p for p in prompts)
    fresh = train(tmp_path / "fresh", *common, "method.revision=false")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    tokens = [json.loads((tmp_path / d / "results.json").read_text())["teacher_tokens"] for d in ("rev", "fresh")]
    assert tokens[0] > tokens[1]  # the student's explanation rides along in every revision prompt
    [row] = json.loads((tmp_path / "rev" / "results.json").read_text())["rounds"]
    assert 0 < row["teacher_output_tokens"] < row["teacher_tokens"] == tokens[0]


def test_recorded_teacher_cannot_revise(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_text('{"example_id": "x", "text": "The answer is 1."}\n')
    proc = train(tmp_path / "run", "experiment=smoke", "method=elad", "logger=csv", "teacher=recorded",
                 f"teacher.path={path}")
    assert proc.returncode == 2 and "method.revision=false" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_candidates_too_few_to_spend_a_rounds_share_are_refused_before_anything_is_bought(tmp_path):
    """ELAD buys among a round's candidates only: 64 of them over 3 rounds bought 192 of a 300-query
    budget on the testbed, beside methods that spent all 300."""
    proc = train(tmp_path, "experiment=smoke", "method=elad", "logger=csv", "budget.max_queries=40",
                 "method.rounds=2", "method.candidates=16")
    line = [x for x in (proc.stdout + proc.stderr).splitlines() if "tailkd-train: " in x]
    assert proc.returncode == 2 and len(line) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert "method.candidates=16 is fewer than a round's share of budget.max_queries (20 of 40 over 2 rounds)" \
        in line[0] and "set method.candidates >= 20" in line[0]
    assert not (tmp_path / "ledger.jsonl").exists() or "paid" not in (tmp_path / "ledger.jsonl").read_text()


def test_bad_elad_settings():
    with pytest.raises(ConfigError, match="method.selection"):
        Elad(selection="vibes", revision_prompt=REVISION_PROMPT)
    with pytest.raises(ConfigError, match="method.within"):
        Elad(within="backwards", revision_prompt=REVISION_PROMPT)
    with pytest.raises(ConfigError, match="revision_prompt"):
        Elad(revision=True, revision_prompt="")
    with pytest.raises(ConfigError, match="method.test_every_round must be true or false"):
        Elad(test_every_round="false", revision_prompt=REVISION_PROMPT)


def test_explain_runs_batched_on_a_tiny_student():
    student = tiny_student(init_seed=4)
    task = chain_task()
    examples = [Example(f"e{i}", f"What is {i} + 3?", str(i + 3)) for i in range(5)]
    explained = explain(student, task, examples, stop=task.until, batch_size=4, k=3, seed=1)
    assert [e.example.id for e in explained] == [e.id for e in examples]
    for e in explained:
        assert len(e.sampled_answers) == 3 and 0 <= e.within <= 1 and 0 <= e.across <= 1
        assert len(e.step_answers) == len(e.steps) + 1  # prefix: after 0..n steps


def test_the_equal_steps_control_trains_as_many_steps_as_elad(tmp_path):
    """ELAD's round r trains again on everything bought so far; finetune_equal_steps_elad trains on all of
    it once, for as many optimiser steps, so that ELAD is not credited with its extra training."""
    common = ["experiment=smoke", "logger=csv", "budget.max_queries=48"]
    runs = {"elad": ["method=elad", "method.rounds=3", "method.revision=false"],
            "control": ["method=finetune_equal_steps_elad", "method.steps_of_elad=3"]}
    results = {}
    for name, overrides in runs.items():
        proc = train(tmp_path / name, *common, *overrides)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    sizes = [r["num_train_examples"] for r in results["elad"]["rounds"]]
    assert sizes == [16, 32, 48]  # equal shares of the budget, every one trainable: the control's premise
    assert results["control"]["num_train_examples"] == 48
    assert results["control"]["train_steps"] == results["elad"]["train_steps"] > 48 // 8
