"""TAiL's signals: self-consistency summaries, TA scoring, the verifier, normalisation and AUROC."""

import math

import pytest
import torch

from tailkd.errors import ConfigError
from tailkd.signals import SignalSettings
from tailkd.signals.combine import auroc, combine, normalise
from tailkd.signals.self_consistency import self_consistency, summarise
from tailkd.signals.ta import LanguageModelTA, Scored
from tailkd.signals.verifier import ArithmeticVerifierTA, check_arithmetic
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
    items = [Scored(e, e.rationale, e.answer) for e in EXAMPLES]
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


def test_ta_answer_probability_is_zero_without_an_answer_and_confidence_modes_differ():
    student = tiny_student(init_seed=4)
    scores = {mode: LanguageModelTA(student, chain_task(), confidence=mode).score([Scored(EXAMPLES[0], "1 + 4 = 5.", "5")])[0]
              for mode in ("mean", "likelihood", "answer")}
    assert scores["likelihood"].confidence == pytest.approx(math.exp(scores["likelihood"].mean_logprob))
    assert scores["answer"].confidence == pytest.approx(scores["answer"].answer_prob)
    assert scores["mean"].confidence == pytest.approx((scores["likelihood"].confidence + scores["answer"].confidence) / 2)
    none = LanguageModelTA(student, chain_task()).score([Scored(EXAMPLES[0], "I do not know", None)])[0]
    assert none.answer_prob == 0.0
    with pytest.raises(ConfigError, match="ta.confidence"):
        LanguageModelTA(student, chain_task(), confidence="vibes")


def test_verifier_checks_each_equation_and_the_final_answer():
    assert check_arithmetic("12 + 7 = 19. 19 - 3 = 16.", "16") == (3, 0)
    assert check_arithmetic("12 + 7 = 18. 18 - 3 = 15.", "15") == (3, 1)
    assert check_arithmetic("12 + 7 = 19. 19 - 3 = 16.", "17") == (3, 1)
    assert check_arithmetic("She pays $5 x 3 = $15 and 1,200 / 4 = 300.", "300") == (3, 0)
    assert check_arithmetic("Birds fly south.", "yes") == (0, 0)
    scores = ArithmeticVerifierTA().score([Scored(EXAMPLES[0], "2 + 2 = 5.", "5"), Scored(EXAMPLES[0], "no maths", "3")])
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
])
def test_bad_signal_settings(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SignalSettings.from_cfg(changes)


def test_ta_marks_answer_tokens_as_training_tokenises_them():
    student = tiny_student(init_seed=4)
    task = chain_task()
    ta = LanguageModelTA(student, task)
    example = Example("n", "What is 3 - 9?", "-6", "3 - 9 = -6.")
    _, ids, is_answer = ta._pieces(Scored(example, example.rationale, "-6"))
    whole = student.tokenizer(task.target(example.rationale, "-6"), add_special_tokens=False)["input_ids"]
    assert ids[:-1] == whole  # the same tokens the student is trained on
    answer_text = student.tokenizer.decode([i for i, a in zip(ids, is_answer) if a])
    assert "-6" in answer_text and "answer" not in answer_text


def _annotations():
    from tailkd.teachers import Annotation

    return [Annotation(example_id=e.id, prompt=e.question, text=f"{e.rationale} The answer is {e.answer}.",
                       rationale=e.rationale, answer=e.answer if i % 3 else "0", input_tokens=10, output_tokens=10,
                       cost_usd=0.0, backend="simulated", model="simulated-gold") for i, e in enumerate(EXAMPLES)]


def test_signal_cache_reuses_raw_signals_of_identical_weights_only(tmp_path, monkeypatch):
    import tailkd.signals as S
    from tailkd.signals.cache import SignalCache

    task = chain_task()
    examples = {e.id: e for e in EXAMPLES}
    gold = {e.id: e.answer for e in EXAMPLES}
    settings = SignalSettings.from_cfg({"self_consistency": {"enabled": True, "value": "uncertainty"},
                                        "ta_student": {"enabled": True}, "ta_teacher": {"enabled": True}, "k": 3})
    ta = LanguageModelTA(tiny_student(init_seed=5), task, batch_size=4)

    def run(student, cache):
        return S.compute_signals(settings, student, ta, task, _annotations(), examples, gold=gold, batch_size=4,
                                 seed=0, cache=cache)

    fresh_rows, fresh_summary = run(tiny_student(init_seed=4), None)
    first = SignalCache(tmp_path, {"precision": "32-true"})
    rows, summary = run(tiny_student(init_seed=4), first)
    assert rows == fresh_rows and summary == fresh_summary and first.hits == 0
    assert len(list(tmp_path.glob("*.json"))) == 4  # samples, greedy outputs, TA on student, TA on teacher

    calls = []
    original = S.self_consistency
    monkeypatch.setattr(S, "self_consistency", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    again = SignalCache(tmp_path, {"precision": "32-true"})
    assert run(tiny_student(init_seed=4), again) == (fresh_rows, fresh_summary)  # a new object, equal weights
    assert again.hits == 4 and calls == []

    other = SignalCache(tmp_path, {"precision": "32-true"})
    run(tiny_student(init_seed=6), other)  # different weights: only the TA's score of the teacher is shared
    assert other.hits == 1 and calls == [1]
    bf16 = SignalCache(tmp_path, {"precision": "bf16-mixed"})
    run(tiny_student(init_seed=4), bf16)
    assert bf16.hits == 0
