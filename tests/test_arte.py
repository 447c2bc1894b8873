"""ARTE: pairs from known scores, preference scoring against a hand computation, a DPO step raises the
chosen-over-rejected margin, spend per phase adds up to the ledger, smoke and API-teacher runs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from tailkd.errors import ConfigError
from tailkd.methods.arte import Arte
from tailkd.models import generate_texts
from tailkd.signals.cache import SignalCache
from tailkd.signals.preference import Demonstration, Preference, one_shot_prompt, one_shot_scores
from tailkd.tasks import Example
from tailkd.teachers import Budget
from tailkd.teachers.align import DONE
from tailkd.teachers.annotation import Annotation
from tailkd.teachers.backends import Completion
from tailkd.teachers.collect import Collector
from tailkd.teachers.drafting import (
    DraftQuestion,
    DraftRationale,
    QuestionFilter,
    draft_questions,
    parse_question,
)
from tailkd.teachers.pricing import Price
from tailkd.training.checkpoints import STAGE_DONE

from helpers import chain_task, tiny_student
from test_cli import _jsonl, train
from test_teacher_openai import openai_overrides

STRATEGIES = ["Let's think step by step.", "Break it down."]


def _arte(**changes) -> Arte:
    return Arte(strategies=STRATEGIES, question_prompt="Q {{ seeds }}", rationale_prompt="{{ strategy }} {{ question }}",
                question_quartile=0.25, **changes)


def _annotation(i: int, text: str = "1 + 1 = 2. The answer is 2.", answer: str | None = "2") -> Annotation:
    return Annotation(example_id=f"a{i}", prompt="p", text=text, rationale="1 + 1 = 2.", answer=answer,
                      input_tokens=5, output_tokens=5, cost_usd=0.0, backend="x", model="m")


class _Collector:
    def rendered(self, text):
        return f"<render>{text}"

    def prompt_text(self, question):
        return f"Solve: {question}"


def test_pairs_from_known_scores():
    # eight questions with scores 0.8 .. 0.1; two rationales each, the second better except in a tie
    drafts = []
    for q in range(8):
        accuracy = (8 - q) / 10
        rationales = [DraftRationale(0, _annotation(2 * q, f"worse {q}"), Preference(accuracy - 0.05, -3.0)),
                      DraftRationale(1, _annotation(2 * q + 1, f"better {q}"), Preference(accuracy + 0.05, -1.0))]
        if q == 7:  # a tie: no preference, no pair
            rationales[1].preference = Preference(accuracy - 0.05, -3.0)
        drafts.append(DraftQuestion(f"d{q}", f"Question number {q}?", f"make a question {q}", [], rationales))
    question_pairs, rationale_pairs = _arte().pairs(_Collector(), chain_task(), drafts)
    # top quartile (2 of 8) against the bottom quartile, best with worst
    assert [(p["chosen"], p["rejected"]) for p in question_pairs] == [
        ("Question: Question number 0?", "Question: Question number 7?"),
        ("Question: Question number 1?", "Question: Question number 6?")]
    assert question_pairs[0]["prompt"] == "<render>make a question 0"  # the chosen question's own prompt
    assert len(rationale_pairs) == 7 and all(p["chosen"].startswith("better") for p in rationale_pairs)
    assert rationale_pairs[0]["prompt"] == "<render>Solve: Question number 0?"
    assert _arte().preferred_strategy(drafts) == 1


def test_preference_scores_match_a_one_prompt_at_a_time_computation():
    student = tiny_student(init_seed=4)
    task = chain_task()
    questions = [Example(f"p{i}", f"What is {i} + 2?", str(i + 2)) for i in range(3)]
    demos = [Demonstration("What is 1 + 1?", task.target("1 + 1 = 2.", "2")), Demonstration("What is 3 + 3?", " 6")]
    scores = one_shot_scores(student, task, demos, questions, batch_size=4, stop=task.until)
    for demo, score in zip(demos, scores):
        right, logps = 0, []
        for q in questions:
            prompt = one_shot_prompt(task, demo, q)
            assert prompt.startswith("Question: ") and prompt.endswith(f"Question: {q.question}\nAnswer:")
            text = generate_texts(student, [prompt], task.max_new_tokens, stop=task.until)[0]
            right += task.extract_answer(text, q) == q.answer
            ids = student.tokenizer(prompt)["input_ids"]
            answer_ids = student.tokenizer(" " + task.answer_target(q.answer).strip(), add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = student.model(input_ids=torch.tensor([ids + answer_ids])).logits[0].float()
            logp = torch.log_softmax(logits[len(ids) - 1:-1], -1)
            logps.append(sum(logp[i, t].item() for i, t in enumerate(answer_ids)))
        assert score.accuracy == right / 3
        assert score.likelihood == pytest.approx(sum(logps) / 3, abs=1e-3)


def test_question_parsing_and_near_duplicates():
    assert parse_question("Sure! Question: What is 12 + 7?\nThanks") == "What is 12 + 7?"
    assert parse_question("What is 3 + 4? I hope this helps.") == "What is 3 + 4?"
    assert parse_question(":::") is None and parse_question("Question: hi") is None

    # the few-shot Qwen 1.5B drafting CommonsenseQA questions (docs/results.md): the choices are the question's
    drafted = ("Question: What does the breeze blow through? Answer choices: (A) plant (B) flower (C) sky (D) sunshine "
               "(E) lamp")
    assert parse_question(drafted) == drafted.removeprefix("Question: ")
    assert parse_question("Where is it cold? (A) fridge (B) oven") == "Where is it cold? (A) fridge (B) oven"
    real = ("What has happened if you agree with someone? Answer choices: (A) asking them did we just become best "
            "friends? (B) nodding (C) become closer")  # CommonsenseQA's own: a choice with a question mark
    assert parse_question(f"Question: {real}") == real
    # the 1.5B's own drafts at ARTE's seed 0 (96e4923): the choices on the line after the question
    for question, choices in [
        ("What activity do many people enjoy doing at a bath?",
         "Answer choices: (A)Playing with toys (B) Reading books (C) Brewing tea (D) Listening to music (E) Getting a bath"),
        ("What season is associated with autumn and连续 decrease in leaves?",
         "Answer choices: (A) summer (B) autumn (C) winter (D) fall (E) spring")]:
        assert parse_question(f"Question: {question} \n{choices}") == f"{question} {choices}"
        assert parse_question(f"Question: {question}\n{choices.replace(' (', chr(10) + '(')}") == f"{question} {choices}"
    # choices named deep in a paragraph of analysis are not the question's
    assert parse_question("Question: Where did he land?\nWe look for a place. The options are:\n\n- (A) USA") == \
        "Where did he land?"
    keep = QuestionFilter(["What is 12 + 7?"], ["How many apples does Sam have left?"], 0.8)
    assert keep.verdict("What is 12 + 7 ?") == "duplicate"  # a seed, reworded only in spacing
    assert keep.verdict("How many apples does sam have left") == "like_test"
    assert keep.verdict("What is 12 + 8?") == "keep" and keep.verdict("what is 12 + 8") == "duplicate"


# -- multiple-choice drafts: the few-shot Qwen 1.5B drafted CommonsenseQA questions without choices ----
CHOICES = {label: text for label, text in zip("ABCDE", ["fridge", "oven", "attic", "cellar", "garden"])}
MC_POOL = [Example(f"s{i}", f"Where is thing {i} kept? Answer choices: (A) fridge (B) oven (C) attic (D) cellar "
                   f"(E) garden", "A", None, CHOICES) for i in range(6)]
WITH = "Question: Where do {0} sleep? Answer choices: (A) {0}bed (B) {0}roof (C) {0}tree"
WITHOUT = "Question: Where do {} sleep?"  # what the 1.5B wrote for 30 of 30 drafts before 06b98f8


class _Scripted:
    """A teacher that drafts ``drafts`` in turn and answers every other prompt with (A)."""

    name, model, max_concurrency, batch_size, cacheable = "scripted", "scripted-1", 1, 1, False

    def __init__(self, drafts):
        self.drafts, self.asked, self.limits = iter(drafts), [], {}

    def prepare(self, task, examples):
        pass

    def complete(self, requests):
        self.asked += [r.example_id for r in requests]
        self.limits.update((r.example_id, r.param("max_tokens")) for r in requests)
        rationale = [r.example_id.split("-")[-1].startswith("r") for r in requests]
        return [Completion("It is cold. The answer is (A)." if is_rationale else next(self.drafts),
                           10, 10, self.model) for is_rationale in rationale]


def _scripted_collector(drafts, budget):
    return Collector(_Scripted(drafts), chain_task(), prompt="{{ question }}", params={"max_tokens": 32},
                     price=Price(1.0, 1.0), budget=budget, progress=False)


def test_a_multiple_choice_draft_without_its_choices_is_refused_and_the_kept_ones_get_every_rationale(tmp_path):
    animals = ["cats", "dogs", "owls", "bats", "mice", "ants", "bees", "cows"]
    script = [WITHOUT.format(animals[0]), WITH.format(animals[1]), WITHOUT.format(animals[2]), WITH.format(animals[3]),
              WITH.format(animals[4]), WITH.format(animals[5]), WITH.format(animals[6])]
    collector = _scripted_collector(script, Budget(max_queries=10))
    arte = _arte(num_questions=5)
    seen = QuestionFilter([e.question for e in MC_POOL], [], 0.8)
    drafts, counts = arte.draft(collector, MC_POOL, seen, random.Random(0), Budget(max_queries=10),
                                lambda cap: cap.minus(collector.ledger.spent()), tmp_path)
    assert [d.question for d in drafts] == [WITH.format("dogs").removeprefix("Question: "),
                                            WITH.format("bats").removeprefix("Question: ")]
    assert counts.no_choices == 2 and [r["reason"] for r in counts.refused] == ["no_choices", "no_choices"]
    # 4 questions asked + 2 x 2 rationales: the refusals took from the questions, not the rationales
    assert all(len(d.rationales) == 2 for d in drafts) and collector.ledger.spent().queries == 8
    # a task without choices refuses nothing for lacking them
    plain = [Example(f"c{i}", f"What is {i} + 2?", str(i + 2)) for i in range(3)]
    kept, plain_counts = draft_questions(_scripted_collector(script, Budget()), plain, QuestionFilter([], [], 0.8),
                                         wanted=3, seeds_per_prompt=2, template="{{ seeds }}", temperature=1.0,
                                         rng=random.Random(0), id_prefix="d-")
    assert len(kept) == 3 and plain_counts.no_choices == 0


@pytest.mark.parametrize("limit, expected", [(None, 32), (384, 384)])
def test_drafted_rationales_get_the_methods_length_limit(limit, expected, tmp_path):
    """The strategy prompts are zero-shot: the few-shot-prompted 1.5B's max_tokens of 128 cut 76 of its
    104 drafted rationales before their answer (ARTE seed 0 at 81e39a8)."""
    collector = _scripted_collector([WITH.format("cats"), WITH.format("owls")], Budget(max_queries=6))
    seen = QuestionFilter([e.question for e in MC_POOL], [], 0.8)
    drafts, _ = _arte(num_questions=4, rationale_max_tokens=limit).draft(
        collector, MC_POOL, seen, random.Random(0), Budget(max_queries=6),
        lambda cap: cap.minus(collector.ledger.spent()), tmp_path)
    limits = collector.backend.limits
    assert {limits[f"{d.id}-r{i}"] for d in drafts for i in range(2)} == {expected}
    assert {limits[d.id] for d in drafts} == {32}  # questions keep the teacher's limit


def test_a_run_whose_drafts_are_all_unusable_stops_with_one_error_naming_why(tmp_path):
    script = [WITHOUT.format(i) for i in range(40)]
    collector = _scripted_collector(script, Budget(max_queries=40))
    seen = QuestionFilter([e.question for e in MC_POOL], [], 0.8)
    with pytest.raises(ConfigError, match="no usable question.*22 without the answer choices"):
        _arte().draft(collector, MC_POOL, seen, random.Random(0), Budget(max_queries=24),
                      lambda cap: cap.minus(collector.ledger.spent()), tmp_path)
    # it asked while a question could still be kept and paid for (1 + 2 queries): 22 of 24
    assert collector.ledger.spent().queries == 22
    refused = _jsonl(tmp_path / "refused_drafts.jsonl")  # what was paid for is kept
    assert len(refused) == 22 and refused[0]["text"] == WITHOUT.format(0)


def test_a_dpo_step_raises_the_margin_of_chosen_over_rejected(tmp_path):
    from tailkd.tasks import load_task_data
    from tailkd.teachers.align import DPOSettings, dpo_align, margins
    from tailkd.teachers.backends.hf_local import HFLocalBackend

    from helpers import task_cfg

    data = load_task_data(task_cfg(train_size=20, test_size=2))
    backend = HFLocalBackend({"model": "tiny-teacher", "source": "tiny", "init_seed": 3, "vocab_size": 400,
                              "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 4}})
    backend.prepare(data.task, data.train)
    base_identity = backend.identity
    pairs = [{"prompt": f"Question: {e.question}\nAnswer:", "chosen": f" {e.rationale} The answer is {e.answer}.",
              "rejected": " I do not know."} for e in data.train[:8]]
    before = margins(backend.student.model, backend.student.tokenizer, pairs)
    settings = DPOSettings.from_cfg({"beta": 0.1, "lr": 5e-3, "epochs": 3, "batch_size": 4, "accumulate": 1,
                                     "lora": {"r": 4, "alpha": 8}})
    stats = dpo_align(backend, pairs, settings, tmp_path / "adapter", seed=0)
    assert stats["dpo_margin_before"] == pytest.approx(sum(before) / 8, abs=1e-4)
    assert stats["dpo_margin_after"] > stats["dpo_margin_before"] + 0.1
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert backend.identity != base_identity and "|adapter=" in backend.identity  # aligned answers are another cache key
    untouched = HFLocalBackend({"model": "tiny-teacher", "source": "tiny", "init_seed": 3, "vocab_size": 400,
                                "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 4}})
    untouched.prepare(data.task, data.train)
    aligned, base = backend.student.model.state_dict(), untouched.student.model.state_dict()
    assert aligned.keys() == base.keys() and all(torch.equal(aligned[k], base[k]) for k in base)  # DPO trained the adapter alone


def test_a_rerun_restores_the_dpo_adapter_a_killed_run_left_and_trains_again_on_other_pairs(tmp_path, monkeypatch):
    import trl

    from tailkd.tasks import load_task_data
    from tailkd.teachers.align import DPOSettings, dpo_align, margins
    from tailkd.teachers.backends.hf_local import HFLocalBackend

    from helpers import task_cfg

    data = load_task_data(task_cfg(train_size=20, test_size=2))

    def teacher():  # a rerun is a new process: the teacher is built again from its source
        backend = HFLocalBackend({"model": "tiny-teacher", "source": "tiny", "init_seed": 3, "vocab_size": 400,
                                  "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 4}})
        backend.prepare(data.task, data.train)
        return backend

    pairs = [{"prompt": f"Question: {e.question}\nAnswer:", "chosen": f" {e.rationale} The answer is {e.answer}.",
              "rejected": " I do not know."} for e in data.train[:8]]
    settings = DPOSettings.from_cfg({"lr": 5e-3, "epochs": 2, "batch_size": 4, "accumulate": 1, "lora": {"r": 4, "alpha": 8}})
    killed = teacher()
    first = dpo_align(killed, pairs, settings, tmp_path / "run1" / "adapter", seed=0, saved=tmp_path / "dpo")
    assert first["dpo_restored"] is False and (tmp_path / "dpo" / "done.json").is_file()

    class Refused:
        def __init__(self, *a, **k):
            raise AssertionError("DPO trained again")

    monkeypatch.setattr(trl, "DPOTrainer", Refused)
    rerun = teacher()
    again = dpo_align(rerun, pairs, settings, tmp_path / "run2" / "adapter", seed=0, saved=tmp_path / "dpo")
    assert again == {**first, "dpo_restored": True}
    assert rerun.identity == killed.identity  # the aligned teacher's cached answers are found again
    assert (tmp_path / "run2" / "adapter" / "adapter_model.safetensors").is_file()
    assert margins(rerun.student.model, rerun.student.tokenizer, pairs) == pytest.approx(
        margins(killed.student.model, killed.student.tokenizer, pairs), abs=1e-4)
    monkeypatch.undo()
    other = dpo_align(teacher(), pairs[:6], settings, tmp_path / "run3" / "adapter", seed=0, saved=tmp_path / "dpo")
    assert other["dpo_restored"] is False and other["dpo_pairs"] == 6
    # an adapter that is not the one its record names, or cannot be read, is trained again, not trusted
    done = tmp_path / "dpo" / DONE
    done.write_text(json.dumps({**json.loads(done.read_text()), "fingerprint": "another"}))
    retrained = teacher()
    assert dpo_align(retrained, pairs[:6], settings, tmp_path / "run4", seed=0, saved=tmp_path / "dpo")["dpo_restored"] is False
    def adapted(model):  # layers that add an adapter's update, PEFT's or served in place
        return sum("lora_A" in n or bool(m._forward_hooks) for n, m in model.named_modules())
    assert adapted(retrained.student.model) == adapted(rerun.student.model) > 0  # one adapter, not a second over the first
    (tmp_path / "dpo" / "adapter_model.safetensors").write_bytes(b"half an adapter")
    assert dpo_align(teacher(), pairs[:6], settings, tmp_path / "run5", seed=0, saved=tmp_path / "dpo")["dpo_restored"] is False


def test_the_stage_record_dpo_writes_is_the_one_checkpoints_look_for():
    assert DONE == STAGE_DONE


def test_the_heap_dpo_freed_goes_back_before_the_aligned_teacher_writes(tmp_path, monkeypatch):
    import tailkd.methods.arte as arte
    import tailkd.teachers.align as align

    calls = []
    monkeypatch.setattr(align, "dpo_align", lambda backend, pairs, settings, out, seed, saved: calls.append(("dpo", len(pairs))) or {"dpo_pairs": len(pairs)})
    monkeypatch.setattr(arte, "release_freed_memory", lambda: calls.append(("trim",)) or True)
    pair = {"prompt": "p", "chosen": "a", "rejected": "b", "kind": "rationale"}
    assert _arte().align_teacher(None, [pair, pair], tmp_path, 0) == {"dpo_pairs": 2}
    assert calls == [("dpo", 2), ("trim",)]


def test_smoke_run_writes_drafts_pairs_an_adapter_and_spend_by_phase(tmp_path):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    select = train(tmp_path / "select", "experiment=smoke", "method=arte", "method.align=select", "logger=csv", cache)
    assert select.returncode == 0, select.stderr[-3000:]
    proc = train(tmp_path, "experiment=smoke", "method=arte", "logger=csv", cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the same seed drafts the same questions for the same student: dpo reads select's one-shot scores back
    # (the preference set's answers, the drafts' answers and likelihoods), not the aligned teacher's new data's
    results = json.loads((tmp_path / "results.json").read_text())
    assert json.loads((tmp_path / "select" / "results.json").read_text())["signal_cache_hits"] == 0
    assert results["signal_cache_hits"] == 3
    assert _jsonl(tmp_path / "drafts.jsonl") == _jsonl(tmp_path / "select" / "drafts.jsonl")
    drafts = _jsonl(tmp_path / "drafts.jsonl")
    assert results["method"] == "arte" and results["align"] == "dpo" and len(drafts) == results["drafted"] == 8
    assert all(len(d["rationales"]) == 4 and all(r["score"] is not None for r in d["rationales"]) for d in drafts)
    pairs = _jsonl(tmp_path / "preference_pairs.jsonl")
    assert len(pairs) == results["question_pairs"] + results["rationale_pairs"] and results["question_pairs"] == 2
    assert (tmp_path / "teacher_adapter" / "adapter_model.safetensors").is_file()
    assert len(_jsonl(tmp_path / "tailored.jsonl")) == results["tailored"] > 0
    phases = results["spend_by_phase"]
    assert set(phases) == {"draft_questions", "draft_rationales", "tailored_questions", "tailored_rationales"}
    assert sum(p["queries"] for p in phases.values()) == results["teacher_queries"] <= 80
    assert sum(p["tokens"] for p in phases.values()) == results["teacher_tokens"]
    assert sum(p["output_tokens"] for p in phases.values()) == results["teacher_output_tokens"]
    assert 0 < results["teacher_output_tokens"] < results["teacher_tokens"]
    ledger = _jsonl(tmp_path / "ledger.jsonl")
    assert {e["phase"] for e in ledger} == set(phases)
    assert phases["draft_questions"]["queries"] + phases["draft_rationales"]["queries"] <= 40  # draft_share 0.5
    assert results["dpo_margin_after"] > results["dpo_margin_before"]
    assert math.isfinite(results["test_accuracy"]) and (tmp_path / "student").is_dir()
    # off a terminal DPO's steps are tailkd's progress, not the trainer's printed dicts nor datasets' bars
    assert "'loss'" not in proc.stdout and "Tokenizing train dataset" not in proc.stderr
    assert "is_gradient_checkpointing" not in proc.stderr  # TRL's use of a deprecated attribute


def test_select_with_an_api_teacher_and_dpo_refused_before_anything_is_bought(fake, api_key, tmp_path):
    server = fake()
    common = ["experiment=smoke", "method=arte", "logger=csv", *openai_overrides(server), "budget.max_queries=60"]
    refused = train(tmp_path / "dpo", *common)
    assert refused.returncode == 2 and "method.align=select" in refused.stdout + refused.stderr
    assert server.count == 0 and not (tmp_path / "dpo" / "ledger.jsonl").exists()
    proc = train(tmp_path / "select", *common, "method.align=select")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "select" / "results.json").read_text())
    assert results["align"] == "select" and results["preferred_strategy"] in range(4)
    assert not (tmp_path / "select" / "teacher_adapter").exists()
    assert results["drafted"] == 6 and results["tailored"] > 0  # 30 queries for drafts: 6 x (1 + 4)
    assert server.wait_quiet() == results["teacher_requests_sent"] == results["teacher_queries"]
    phases = results["spend_by_phase"]
    assert sum(p["cost_usd"] for p in phases.values()) == pytest.approx(results["teacher_cost_usd"], abs=1e-5)  # each rounded to 1e-6
    # the tailored rationales were asked under the strategy the student preferred
    tailored_prompts = [p for p in server.prompts() if "Write one new question" not in p][-results["tailored"]:]
    assert len({p.split(" Answer the question")[0] for p in tailored_prompts}) == 1


def test_align_none_keeps_the_teacher_and_writes_the_tailored_data_under_its_own_prompt(fake, api_key, tmp_path):
    # DPO's control: the same drafts, scores and tailored questions, the teacher unaligned, under the prompt
    # the aligned teacher would get
    server = fake()
    proc = train(tmp_path, "experiment=smoke", "method=arte", "logger=csv", *openai_overrides(server),
                 "budget.max_queries=60", "method.align=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["align"] == "none" and results["preferred_strategy"] is None and "dpo_margin_after" not in results
    assert not (tmp_path / "teacher_adapter").exists() and results["tailored"] > 0
    tailored = _jsonl(tmp_path / "tailored.jsonl")
    strategies = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "method" / "arte.yaml").read_text())["strategies"]
    asked = [p for p in server.prompts() if any(t["question"] in p for t in tailored)
             and "Write one new question" not in p]
    assert len(asked) == len(tailored)
    assert not any(s in p for p in asked for s in strategies)


def test_bad_arte_settings():
    with pytest.raises(ConfigError, match="method.align"):
        _arte(align="magic")
    with pytest.raises(ConfigError, match="at least two"):
        Arte(strategies=["only one"], question_prompt="q", rationale_prompt="r")
    with pytest.raises(ConfigError, match="draft_share"):
        _arte(draft_share=1.5)
    for bad in (0, "long", True):
        with pytest.raises(ConfigError, match="rationale_max_tokens"):
            _arte(rationale_max_tokens=bad)


def test_dpo_settings_default_to_arte_yaml_and_refuse_unknown_or_mistyped_keys():
    """One owner of DPO's defaults: a config that leaves a key out gets arte.yaml's value (the batch
    size was 8 in the code and 2 in arte.yaml)."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from tailkd.config import config_dir
    from tailkd.errors import ConfigError
    from tailkd.teachers.align import DPOSettings

    documented = OmegaConf.to_container(OmegaConf.load(config_dir() / "method" / "arte.yaml").dpo)
    assert asdict(DPOSettings.from_cfg(documented)) == asdict(DPOSettings())
    assert DPOSettings.from_cfg({"lora": {"target_modules": ["q_proj"]}}).lora.target_modules == ("q_proj",)
    for bad, named in (({"warmup_steps": 3}, "warmup_steps"), ({"lora": {"rank": 4}}, "rank"),
                       ({"batch_size": "two"}, "two")):
        with pytest.raises(ConfigError, match=named):
            DPOSettings.from_cfg(bad)


def test_one_shot_scores_come_back_from_the_cache_for_the_same_weights_only(tmp_path, monkeypatch):
    import tailkd.signals.preference as preference

    task = chain_task()
    questions = [Example(f"p{i}", f"What is {i} + 2?", str(i + 2)) for i in range(3)]
    demos = [Demonstration("What is 1 + 1?", task.target("1 + 1 = 2.", "2")), Demonstration("What is 3 + 3?", " 6")]
    student = tiny_student(init_seed=4)
    score = lambda s, cache: one_shot_scores(s, task, demos, questions, batch_size=4, stop=task.until, cache=cache)  # noqa: E731
    first = score(student, SignalCache(tmp_path))
    generated, scored = [], []
    real_generate, real_logprobs = preference.generate_texts, preference.continuation_logprobs
    monkeypatch.setattr(preference, "generate_texts", lambda *a, **k: generated.append(1) or real_generate(*a, **k))
    monkeypatch.setattr(preference, "continuation_logprobs", lambda *a, **k: scored.append(1) or real_logprobs(*a, **k))
    again = SignalCache(tmp_path)
    assert score(student, again) == first and again.hits == 2 and not generated and not scored
    other = SignalCache(tmp_path)
    assert score(tiny_student(init_seed=5), other) != first and other.hits == 0 and generated and scored


def test_answer_likelihoods_compute_a_demonstration_once_and_match_the_prompt_by_prompt_pass(monkeypatch):
    from tailkd.signals.preference import continuation_logprobs

    student, task = tiny_student(init_seed=4), chain_task()
    long_rationale = " ".join(f"{i} + 1 = {i + 1}." for i in range(12))  # a drafted rationale's length
    demos = [Demonstration(f"What is {d} + 12?", task.target(long_rationale, str(d + 12))) for d in range(2)]
    questions = [Example(f"p{i}", f"What is {i} + {i * 7}?", str(8 * i)) for i in range(5)]
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    answers = [" " + task.answer_target(q.answer).strip() for _ in demos for q in questions]
    alone = [continuation_logprobs(student, [p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    rows = []
    forward = student.model.forward
    monkeypatch.setattr(student.model, "forward", lambda *a, **k: rows.append(k["input_ids"].shape) or forward(*a, **k))
    shared = continuation_logprobs(student, prompts, answers, batch_size=8, group=len(questions))
    assert shared == pytest.approx(alone, abs=1e-4)
    demo_tokens = len(student.tokenizer(task.prompt_for(demos[0].question) + demos[0].target)["input_ids"])
    # per batch: the demonstration alone, then each row's question and answer after it
    assert [r[0] for r in rows] == [1, 5, 1, 5] and rows[0][1] >= demo_tokens and rows[1][1] < demo_tokens


def test_one_shot_batches_hold_one_demonstration_so_its_prefix_is_shared(monkeypatch):
    import tailkd.signals.preference as preference

    seen = []
    monkeypatch.setattr(preference, "generate_texts", lambda student, batch, *a, **k: seen.append(batch) or [""] * len(batch))
    task = chain_task()
    demos = [Demonstration(f"What is {i} + 1?", task.target(f"{i} + 1 = {i + 1}.", str(i + 1))) for i in range(3)]
    questions = [Example(f"p{i}", f"What is {i} + 2?", str(i + 2)) for i in range(5)]
    preference.one_shot_correct(None, task, demos, questions, batch_size=4)
    assert [len(b) for b in seen] == [4, 1, 4, 1, 4, 1]
    assert all(len({p.split("\n\n")[0] for p in b}) == 1 for b in seen)  # one demonstration a batch
