"""TAiL's signals: self-consistency summaries, TA scoring, the verifier, normalisation and AUROC."""

import math

import pytest
import torch

from tailkd.errors import ConfigError
from tailkd.signals import Decoding, Measured, SignalCache, SignalSettings, measure_signals, weigh
from tailkd.signals.combine import combine, normalise
from tailkd.signals.measure import greedy_outputs
from tailkd.signals.self_consistency import self_consistency, summarise
from tailkd.signals.ta import Attempt, LanguageModelTA, TAScore
from tailkd.signals.verifier import ArithmeticVerifierTA, check_arithmetic
from tailkd.signals.weigh import drop_lowest
from tailkd.stats import auroc
from tailkd.tasks import Example
from tailkd.training import Encoder
from tailkd.training.loss import per_example_token_loss

from helpers import chain_task, tiny_student

EXAMPLES = [Example(f"e{i}", f"What is {i} + {i + 3}?", str(2 * i + 3), f"{i} + {i + 3} = {2 * i + 3}.") for i in range(6)]


def test_summarise_counts_distinct_majority_and_agreement():
    c = summarise(["5", "5", "7", None], teacher_answer="7")
    assert (c.distinct, c.majority_share, c.majority_answer, c.teacher_agreement) == (3, 0.5, "5", 0.25)
    assert summarise([None, None]).majority_share == 0


def test_self_consistency_samples_k_per_question_in_batches():
    student = tiny_student(init_seed=4)
    out = self_consistency(student, chain_task(), EXAMPLES, k=3, temperature=1.0, batch_size=4, seed=0)
    assert set(out) == {e.id for e in EXAMPLES}
    assert all(len(c.answers) == 3 and 1 <= c.distinct <= 3 for c in out.values())
    again = self_consistency(student, chain_task(), EXAMPLES, k=3, temperature=1.0, batch_size=4, seed=0)
    assert again == out  # seeded


def test_ta_scores_match_a_per_example_computation():
    student = tiny_student(init_seed=4)
    task = chain_task()
    ta = LanguageModelTA(student, task, batch_size=4)
    items = [Attempt(e, e.rationale, e.answer) for e in EXAMPLES]
    batched = ta.score(items)
    single = [ta.score([item])[0] for item in items]
    for b, s in zip(batched, single):
        assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-4)
        assert b.answer_prob == pytest.approx(s.answer_prob, rel=1e-3)
        assert 0 < b.answer_prob <= 1 and 0 < b.confidence <= 1
    # the mean log-prob is minus the training loss of the same (prompt, target)
    encoder = Encoder(student.tokenizer, True, 256)
    batch = encoder.collate([(task.prompt(e), task.target(e.rationale, e.answer)) for e in EXAMPLES[:2]])
    with torch.no_grad():
        logits = student.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    losses = per_example_token_loss(logits, batch["labels"], shift=True)
    for loss, score in zip(losses.tolist(), batched[:2]):
        assert -loss == pytest.approx(score.mean_logprob, abs=0.05)  # tokenised in pieces vs whole


def _uneven_items():
    """Attempt items whose lengths alternate long and short, so that batches in the order given pad every
    short one to a long one's length."""
    long = " ".join(f"{i} + 1 = {i + 1}." for i in range(12))
    return [Attempt(e, long if i % 2 == 0 else e.rationale, e.answer) for i, e in enumerate(EXAMPLES)]


def _input_shapes(model):
    shapes = []
    model.register_forward_pre_hook(lambda m, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    return shapes


def test_ta_scores_are_the_same_in_any_order_and_batching_and_come_back_in_the_order_given():
    student = tiny_student(init_seed=4)
    items = _uneven_items()
    single = [LanguageModelTA(student, chain_task(), batch_size=1).score([item])[0] for item in items]
    ta = LanguageModelTA(student, chain_task(), batch_size=2)
    for got in (ta.score(items), ta.score(items[::-1])[::-1]):
        for b, s in zip(got, single):
            assert b.mean_logprob == pytest.approx(s.mean_logprob, abs=1e-5)
            assert b.answer_prob == pytest.approx(s.answer_prob, rel=1e-4)


def test_ta_batches_pad_only_to_their_own_longest_item():
    student = tiny_student(init_seed=4)
    ta = LanguageModelTA(student, chain_task(), batch_size=2)
    items = _uneven_items()
    lengths = sorted((len(p) + len(t) for p, t, _ in map(ta._pieces, items)), reverse=True)
    shapes = _input_shapes(student.model)
    ta.score(items)
    # longest first: each batch is as wide as its first item, and no wider
    assert shapes == [(2, lengths[i]) for i in range(0, len(items), 2)]


def test_ta_reads_the_lm_head_at_target_positions_only():
    student = tiny_student(init_seed=4)
    ta = LanguageModelTA(student, chain_task(), batch_size=3)
    items = _uneven_items()
    rows = []
    student.model.get_output_embeddings().register_forward_hook(lambda m, args, out: rows.append(out.shape[:-1].numel()))
    ta.score(items)
    # every target token once (EOS included), read at the position before it: not the prompt, not padding
    assert sum(rows) == sum(len(t) for _, t, _ in map(ta._pieces, items))


def test_ta_answer_probability_is_zero_without_an_answer_and_confidence_modes_differ():
    student = tiny_student(init_seed=4)
    scores = {mode: LanguageModelTA(student, chain_task(), confidence=mode).score([Attempt(EXAMPLES[0], "1 + 4 = 5.", "5")])[0]
              for mode in ("mean", "likelihood", "answer")}
    assert scores["likelihood"].confidence == pytest.approx(math.exp(scores["likelihood"].mean_logprob))
    assert scores["answer"].confidence == pytest.approx(scores["answer"].answer_prob)
    assert scores["mean"].confidence == pytest.approx((scores["likelihood"].confidence + scores["answer"].confidence) / 2)
    none = LanguageModelTA(student, chain_task()).score([Attempt(EXAMPLES[0], "I do not know", None)])[0]
    assert none.answer_prob == 0.0
    with pytest.raises(ConfigError, match="ta.confidence"):
        LanguageModelTA(student, chain_task(), confidence="vibes")


def test_verifier_checks_each_equation_and_the_final_answer():
    assert check_arithmetic("12 + 7 = 19. 19 - 3 = 16.", "16") == (3, 0)
    assert check_arithmetic("12 + 7 = 18. 18 - 3 = 15.", "15") == (3, 1)
    assert check_arithmetic("12 + 7 = 19. 19 - 3 = 16.", "17") == (3, 1)
    assert check_arithmetic("She pays $5 x 3 = $15 and 1,200 / 4 = 300.", "300") == (3, 0)
    assert check_arithmetic("Birds fly south.", "yes") == (0, 0)
    scores = ArithmeticVerifierTA().score([Attempt(EXAMPLES[0], "2 + 2 = 5.", "5"), Attempt(EXAMPLES[0], "no maths", "3")])
    assert scores[0].confidence == pytest.approx(0.5) and scores[1].confidence == 1.0


def test_normalisers():
    assert normalise([3.0, 1.0, 2.0, 2.0], "rank") == [1.0, 0.25, 0.625, 0.625]
    assert normalise([2.0, 4.0, 3.0], "minmax") == [0.0, 1.0, 0.5]
    soft = normalise([0.0, 1.0, 2.0], "softmax", temperature=0.5)
    assert sum(soft) / 3 == pytest.approx(1.0) and soft[0] < soft[1] < soft[2]
    assert normalise([5.0, 5.0], "minmax") == [1.0, 1.0]
    with pytest.raises(ConfigError, match="signals.normalise"):
        normalise([1.0], "zscore")


def test_combiners():
    cols = {"a": [0.5, 1.0], "b": [0.2, 0.5]}
    assert combine(cols, "product", {"a": 1.0, "b": 1.0}) == pytest.approx([0.1, 0.5])
    assert combine(cols, "product", {"a": 2.0, "b": 1.0}) == pytest.approx([0.05, 0.5])
    assert combine(cols, "mean", {"a": 3.0, "b": 1.0}) == pytest.approx([(1.5 + 0.2) / 4, (3 + 0.5) / 4])
    assert combine({}, "product", {}) == []


def test_auroc():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    assert auroc([0.9, 0.3, 0.6, 0.1], [True, True, False, False]) == 0.75
    assert auroc([1.0, 2.0], [True, True]) is None


@pytest.mark.parametrize("changes,field", [
    ({"use": "boost"}, "signals.use"),
    ({"normalise": "z"}, "signals.normalise"),
    ({"combine": "max"}, "signals.combine"),
    ({"self_consistency": {"enabled": True, "k": 1}}, "signals.self_consistency.k"),
    ({"ta_teacher": {"enabled": True, "value": "vibes"}}, "signals.ta_teacher.value"),
    ({"use": "select"}, "signals.use=select"),
    ({"select_candidates": 0}, "signals.select_candidates"),
])
def test_bad_signal_settings(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SignalSettings.from_cfg(changes)


def test_ta_marks_answer_tokens_as_training_tokenises_them():
    student = tiny_student(init_seed=4)
    task = chain_task()
    ta = LanguageModelTA(student, task)
    example = Example("n", "What is 3 - 9?", "-6", "3 - 9 = -6.")
    _, ids, is_answer = ta._pieces(Attempt(example, example.rationale, "-6"))
    whole = student.tokenizer(task.target(example.rationale, "-6"), add_special_tokens=False)["input_ids"]
    assert ids[:-1] == whole  # the same tokens the student is trained on
    answer_text = student.tokenizer.decode([i for i, a in zip(ids, is_answer) if a])
    assert "-6" in answer_text and "answer" not in answer_text


def _annotations(samples=1):
    from tailkd.teachers import Annotation

    return [Annotation(example_id=e.id, prompt=e.question, text=f"{e.rationale} The answer is {e.answer}.",
                       rationale=e.rationale, answer=e.answer if (i + s) % 3 else "0", input_tokens=10,
                       output_tokens=10, cost_usd=0.0, backend="simulated", model="simulated-gold", sample_index=s)
            for i, e in enumerate(EXAMPLES) for s in range(samples)]


ALL = SignalSettings.from_cfg({"self_consistency": {"enabled": True, "k": 3}, "ta_student": {"enabled": True},
                               "ta_teacher": {"enabled": True}})
DECODING = Decoding(max_new_tokens=16, batch_size=4)


def _measure(student, ta, cache, task=None, settings=ALL, annotations=None):
    return measure_signals(settings, student, ta, task or chain_task(), annotations or _annotations(),
                   {e.id: e for e in EXAMPLES}, decoding=DECODING, seed=0, cache=cache)


def test_signal_cache_reuses_raw_signals_of_identical_weights_only(tmp_path, monkeypatch):
    import importlib

    M = importlib.import_module("tailkd.signals.measure")

    ta = LanguageModelTA(tiny_student(init_seed=5), chain_task(), batch_size=4)
    fresh = _measure(tiny_student(init_seed=4), ta, None)
    first = SignalCache(tmp_path, {"precision": "32-true"})
    assert _measure(tiny_student(init_seed=4), ta, first) == fresh and first.hits == 0
    assert len(list(tmp_path.glob("*.json"))) == 3  # samples with the greedy outputs, TA on student, TA on teacher

    calls = []
    original = M.sample_texts
    monkeypatch.setattr(M, "sample_texts", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    again = SignalCache(tmp_path, {"precision": "32-true"})
    assert _measure(tiny_student(init_seed=4), ta, again) == fresh  # a new object, equal weights
    assert again.hits == 3 and calls == []

    other = SignalCache(tmp_path, {"precision": "32-true"})
    # different weights: samples and outputs again; the TA's scores are shared where it reads the same texts
    measured = _measure(tiny_student(init_seed=6), ta, other)
    same_outputs = [m.student_output for m in measured] == [m.student_output for m in fresh]
    assert other.hits == 1 + same_outputs and calls == [1]
    bf16 = SignalCache(tmp_path, {"precision": "bf16-mixed"})
    _measure(tiny_student(init_seed=4), ta, bf16)
    assert bf16.hits == 0


def test_token_logprobs_taken_a_few_rows_at_a_time_are_log_softmax():
    from tailkd.models.logprobs import LOGPROB_ROWS, token_logprobs

    torch.manual_seed(0)
    logits = (torch.randn(LOGPROB_ROWS * 2 + 5, 300) * 4).bfloat16()
    targets = torch.randint(0, 300, (len(logits),))
    expected = logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(token_logprobs(logits, targets), expected, atol=1e-5)


def test_the_students_greedy_output_is_decoded_in_the_pass_that_samples_it():
    """ta_student judges the student's greedy output: one more row per question in the sampling batches,
    not a second pass over the questions (which computed every prompt again)."""
    student = tiny_student(init_seed=4)
    prompt_passes = []
    student.model.register_forward_pre_hook(
        lambda m, a, kw: prompt_passes.append(1) if kw.get("input_ids", a[0] if a else None).shape[1] > 1 else None,
        with_kwargs=True)
    ta = LanguageModelTA(tiny_student(init_seed=5), chain_task(), batch_size=4)
    measured = _measure(student, ta, None)
    questions = len({m.annotation.example_id for m in measured})
    assert len(prompt_passes) == -(-questions // DECODING.batch_size)
    alone = greedy_outputs(student, chain_task(), EXAMPLES, DECODING, SignalCache(None))  # a pass of its own
    assert [m.student_output for m in measured] == [alone[m.annotation.example_id] for m in measured]


def test_answers_already_sampled_are_reused_and_only_the_other_questions_sampled(monkeypatch):
    """select samples its candidates before buying; measuring the bought ones must not sample them again."""
    import importlib

    M = importlib.import_module("tailkd.signals.measure")
    prompts = []
    original = M.sample_texts
    monkeypatch.setattr(M, "sample_texts", lambda s, p, *a, **kw: prompts.append(list(p)) or original(s, p, *a, **kw))
    sc = SignalSettings.from_cfg({"self_consistency": {"enabled": True, "k": 3}})
    from tailkd.signals.measure import Samples

    known = {"e1": Samples(["7", "7", None], "so 7"), "e4": Samples(["1", "2", "3"], "so 1")}
    measured = measure_signals(sc, tiny_student(init_seed=4), None, chain_task(), _annotations(),
                               {e.id: e for e in EXAMPLES}, decoding=DECODING, seed=0, cache=SignalCache(None),
                               sampled=known)
    task = chain_task()
    assert prompts == [[task.prompt(e) for e in EXAMPLES if e.id not in known]]
    by_id = {m.annotation.example_id: m.consistency for m in measured}
    assert by_id["e1"].answers == ("7", "7", None) and by_id["e1"].majority_share == 2 / 3
    assert by_id["e4"].answers == ("1", "2", "3") and all(len(c.answers) == 3 for c in by_id.values())
    prompts.clear()
    measure_signals(sc, tiny_student(init_seed=4), None, chain_task(), _annotations()[1:2],
                    {e.id: e for e in EXAMPLES}, decoding=DECODING, seed=0, sampled=known)
    assert prompts == []  # every question known: nothing sampled


def test_weighted_accuracy_is_the_share_of_training_weight_on_right_answers():
    from tailkd.signals import weighted_accuracy

    assert weighted_accuracy([1.0, 1.0, 1.0, 1.0], [True, True, False, False]) == 0.5
    assert weighted_accuracy([1.0, 0.5, 0.1, 0.4], [True, True, False, False]) == pytest.approx(0.75)
    assert weighted_accuracy([0.0, 1.0, 0.0], [True, False, True]) == 0.0  # filtered out: no weight
    assert weighted_accuracy([1.0, 1.0, 3.0], [True, False, None]) == 0.5  # unknown gold left out
    assert weighted_accuracy([0.0, 0.0], [True, False]) is None


def test_cached_samples_are_read_with_the_current_answer_extraction(tmp_path):
    from tailkd.tasks import Task

    from helpers import task_cfg

    student, cache = tiny_student(init_seed=4), SignalCache(tmp_path)
    sc = SignalSettings.from_cfg({"self_consistency": {"enabled": True, "k": 3}})
    lenient = _measure(student, None, cache, settings=sc)
    strict_task = Task(task_cfg(answer={"type": "number", "pattern": "the answer is\\s*:?\\s*(.+)", "fallback": False}))
    strict = _measure(student, None, cache, task=strict_task, settings=sc)
    assert cache.hits == 1  # the same samples, read again
    # an untrained student never writes "the answer is": strictly read, no sample has an answer
    assert all(set(m.consistency.answers) == {None} for m in strict)
    assert any(a is not None for m in lenient for a in m.consistency.answers)


def test_the_ta_key_holds_the_target_text_it_scored(tmp_path):
    from tailkd.tasks import Task

    from helpers import task_cfg

    student = tiny_student(init_seed=4)
    cache = SignalCache(tmp_path)
    settings = SignalSettings.from_cfg({"ta_teacher": {"enabled": True}})
    plain = LanguageModelTA(student, chain_task())
    _measure(student, plain, cache, settings=settings)
    other_task = Task(task_cfg(target=" Reasoning: {{ rationale }} So the answer is {{ answer }}."))
    reworded = _measure(student, LanguageModelTA(student, other_task), cache, task=other_task, settings=settings)
    assert cache.hits == 0 and reworded != _measure(student, plain, SignalCache(None), settings=settings)


def test_scores_cached_by_an_earlier_version_of_the_ta_are_not_served(tmp_path, monkeypatch):
    """A change to how the TA computes moves its numbers (batching, rounding): the cache keys scores by
    the TA's version, so a run never mixes the earlier code's scores with its own (tailkd-rescore with
    the run's TA then reproduces the run exactly)."""
    student = tiny_student(init_seed=4)
    cache = SignalCache(tmp_path)
    settings = SignalSettings.from_cfg({"ta_teacher": {"enabled": True}})
    ta = LanguageModelTA(student, chain_task())
    _measure(student, ta, cache, settings=settings)
    _measure(student, ta, cache, settings=settings)
    assert cache.hits == 1
    monkeypatch.setattr(LanguageModelTA, "version", LanguageModelTA.version + 1)
    _measure(student, ta, cache, settings=settings)
    assert cache.hits == 1  # scored again, not read from what version 2 wrote


def test_the_global_rng_after_signals_does_not_depend_on_the_cache(tmp_path):
    sc = SignalSettings.from_cfg({"self_consistency": {"enabled": True, "k": 3}})

    student = tiny_student(init_seed=4)  # built first: a tiny model's init seeds the RNG itself

    def rng_after(cache):
        torch.manual_seed(123)
        _measure(student, None, cache, settings=sc)
        return torch.rand(4)

    cache = SignalCache(tmp_path)
    computed, read = rng_after(cache), rng_after(cache)
    assert cache.hits == 1 and torch.equal(computed, read)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(4), computed)  # sampling left the stream where it was


def test_filter_drops_exactly_the_intended_share_whatever_the_ties():
    assert drop_lowest([0.1] * 8 + [0.9, 0.8], 0.2) == [0.0, 0.0] + [1.0] * 8
    assert drop_lowest([0.5, 0.1, 0.1, 0.1, 0.7], 0.4) == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert sum(w == 0 for w in drop_lowest([0.3] * 50, 0.2)) == 10
    settings = SignalSettings.from_cfg({"ta_teacher": {"enabled": True}, "use": "filter", "filter_threshold": 0.2})
    measured = [Measured(a, ta_teacher=TAScore(0.5)) for a in _annotations() * 2]  # 12 tied scores
    weighed = weigh(settings, measured)
    assert weighed.dropped == round(0.2 * 12) == sum(w == 0 for w in weighed.weights)


def test_each_sample_of_a_question_keeps_its_own_weight():
    from tailkd.training.records import records_from_annotations

    annotations = _annotations(samples=2)  # two answers per question, the second one wrong for some
    settings = SignalSettings.from_cfg({"ta_teacher": {"enabled": True}, "normalise": "none", "floor": 0.0})
    confidences = [0.9 if a.answer == e.answer else 0.2 for a in annotations
                   for e in EXAMPLES if e.id == a.example_id]
    weighed = weigh(settings, [Measured(a, ta_teacher=TAScore(c)) for a, c in zip(annotations, confidences)])
    records = records_from_annotations(annotations, chain_task(), {e.id: e for e in EXAMPLES}, weights=weighed.weights)
    by_key = {(a.example_id, a.sample_index): r.weight for a, r in zip(annotations, records)}
    assert by_key[("e0", 0)] != by_key[("e0", 1)]  # e0's first answer is wrong, its second right
    mean = sum(c / 0.9 for c in confidences) / len(confidences)  # the raw weights, scaled to mean 1
    assert [r.weight for r in records] == pytest.approx([c / 0.9 / mean for c in confidences])


def test_judge_ta_reads_p_yes_against_p_no_from_one_forward_pass():
    from tailkd.signals.ta import JudgeTA

    student = tiny_student(init_seed=4)
    judge = JudgeTA(student, chain_task(), batch_size=2)
    items = [Attempt(e, e.rationale, e.answer) for e in EXAMPLES[:3]] + [Attempt(EXAMPLES[0], "2 + 2 = 5.", "5")]
    scores = judge.score(items)
    tok = student.tokenizer
    for item, score in zip(items, scores):
        encoded = tok([judge.text(item)], return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(student.model(**encoded).logits[0, -1].float(), -1)
        yes, no = probs[judge._yes].sum().item(), probs[judge._no].sum().item()
        assert score.confidence == pytest.approx(yes / (yes + no), rel=1e-3)  # batched (left-padded) = alone
        assert score.answer_prob == pytest.approx(yes, rel=1e-3)
        assert "Are the reasoning and the final answer both correct?" in judge.text(item)
    assert "2 + 2 = 5. The answer is 5." in judge.text(items[-1])


def test_judge_ta_preset_builds_and_is_keyed_by_its_prompt(tmp_path):
    from omegaconf import OmegaConf

    from tailkd.signals.ta import JudgeTA, build_ta

    from helpers import REPO, TEXTS

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "ta" / "tiny-judge.yaml"), resolve=True)
    judge = build_ta(cfg, chain_task(), tmp_path, TEXTS * 4)
    assert isinstance(judge, JudgeTA)
    other = build_ta({**cfg, "judge_prompt": "Right? {{ question }} {{ output }}"}, chain_task(), tmp_path, TEXTS * 4)
    item = Attempt(EXAMPLES[0], EXAMPLES[0].rationale, EXAMPLES[0].answer)
    assert judge.key(item) != other.key(item)  # a new prompt is a new score in the signal cache
    with pytest.raises(ConfigError, match="ta.kind"):
        build_ta({**cfg, "kind": "oracle"}, chain_task(), tmp_path, TEXTS)
