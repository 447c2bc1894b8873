"""Raw signals for bought annotations: the student's samples, its greedy output, the TA's scores.

Each measurement is one function, and each goes through the :class:`SignalCache` under a key of
exactly what produced it: the weights' fingerprint, the prompts and decoding settings for the
student; the TA's identity and the exact texts it scored for the TA. The cache stores the sampled
*texts*, not the answers extracted from them, so a change of answer extraction never reads stale
answers. Self-consistency and the student's output are per question (several samples of one
question share them); the TA's score of the teacher is per annotation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from tailkd import timing
from tailkd.models import Student, generate_texts
from tailkd.progress import batches
from tailkd.signals.assistant import Attempt, TAScore, TeachingAssistant
from tailkd.signals.cache import SignalCache
from tailkd.signals.self_consistency import SAMPLER, Consistency, sample_texts, summarise
from tailkd.signals.settings import SignalSettings
from tailkd.tasks import Example, Task
from tailkd.teachers import Annotation
from tailkd.teachers.annotation import split_rationale


@dataclass(frozen=True)
class Decoding:
    """How the student generates for the signals (the task's limits, the evaluation batch size)."""

    max_new_tokens: int
    stop: tuple[str, ...] = ()
    batch_size: int = 16

    def key(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "stop": list(self.stop), "batch_size": self.batch_size}


@dataclass(frozen=True)
class Measured:
    """The raw signals of one bought annotation; None where a signal was not asked for."""

    annotation: Annotation
    consistency: Consistency | None = None  # the student's k sampled answers, against this annotation's answer
    student_output: str | None = None  # the student's greedy output, which ta_student judges
    ta_student: TAScore | None = None
    ta_teacher: TAScore | None = None
    correct: bool | None = None  # the teacher's answer is gold's: the oracle's signal, never a method's


def unique_questions(annotations: Sequence[Annotation], examples: Mapping[str, Example]) -> list[Example]:
    """The questions behind ``annotations``, each once, in order of first appearance."""
    seen: dict[str, Example] = {}
    for a in annotations:
        seen.setdefault(a.example_id, examples[a.example_id])
    return list(seen.values())


@dataclass(frozen=True)
class Samples:
    """A question's k sampled answers and the student's greedy output (which ta_student judges), both
    from one decoding pass."""

    answers: list[str | None]
    output: str


def sample_questions(student: Student, task: Task, questions: Sequence[Example], settings: SignalSettings,
                     decoding: Decoding, seed: int, cache: SignalCache,
                     desc: str = "signals: sampling the student") -> dict[str, Samples]:
    """Each question's :class:`Samples`: the greedy output is one more row beside the k samples, on the
    same prompt cache. It is decoded whichever signals are on, so that every preset of a signal
    ablation reads the one cached entry (the batch's numbers depend on its rows: samples drawn without
    it would be another entry, sampled again); it costs a row in a batch that computes the prompt
    anyway. The texts are cached, the answers extracted now; ``desc`` names the progress."""
    prompts = [task.prompt(e) for e in questions]
    key = {"model": cache.model_id(student.model), "prompts": prompts, "k": settings.k,
           "temperature": settings.temperature, "seed": seed, "task_version": task.version, "sampler": SAMPLER,
           **decoding.key()}
    with timing.phase("sample"):
        texts = cache.fetch("samples", key, lambda: sample_texts(
            student, prompts, decoding.max_new_tokens, k=settings.k, temperature=settings.temperature,
            batch_size=decoding.batch_size, stop=decoding.stop, seed=seed, desc=desc, and_greedy=True))
    return {e.id: Samples([task.extract_answer(t, e) for t in rows[:-1]], rows[-1]) for e, rows in zip(questions, texts)}


def greedy_outputs(student: Student, task: Task, questions: Sequence[Example], decoding: Decoding,
                   cache: SignalCache) -> dict[str, str]:
    prompts = [task.prompt(e) for e in questions]

    def generate() -> list[str]:
        chunks = batches(prompts, decoding.batch_size, "ta_student: the student's greedy outputs", "q")
        return [text for batch in chunks
                for text in generate_texts(student, batch, decoding.max_new_tokens, stop=decoding.stop)]

    key = {"model": cache.model_id(student.model), "prompts": prompts, **decoding.key()}
    with timing.phase("student_outputs"):
        return dict(zip((e.id for e in questions), cache.fetch("student_outputs", key, generate)))


def ta_scores(ta: TeachingAssistant, items: Sequence[Attempt], cache: SignalCache,
              desc: str = "TA: scoring") -> list[TAScore]:
    """The TA's scores of ``items``, keyed by its identity and the exact texts it reads (``ta.key``);
    ``desc`` names the progress."""
    identity = {"ta": type(ta).__name__, "version": ta.version, "confidence": ta.confidence, "batch_size": ta.batch_size,
                "weights": cache.model_id(ta.model.model) if ta.model is not None else None}
    key = {**identity, "items": [ta.key(item) for item in items]}
    with timing.phase("ta"):
        stored = cache.fetch("ta_scores", key, lambda: [asdict(s) for s in ta.score(items, desc=desc)])
    return [TAScore(**s) for s in stored]


def measure_signals(
    settings: SignalSettings,
    student: Student,
    ta: TeachingAssistant | None,
    task: Task,
    annotations: Sequence[Annotation],
    examples: Mapping[str, Example],
    *,
    decoding: Decoding,
    seed: int = 0,
    cache: SignalCache | None = None,
    sampled: Mapping[str, Samples] | None = None,
) -> list[Measured]:
    """The enabled signals of every annotation, in the order given. ``sampled``: questions this same
    student already sampled (select's candidates), their answers and greedy outputs used as they are;
    only the other questions are sampled."""
    cache = cache or SignalCache(None)
    questions = unique_questions(annotations, examples)
    samples = {e.id: sampled[e.id] for e in questions if sampled and e.id in sampled}
    answers: dict[str, list[str | None]] = {}
    outputs: dict[str, str] = {}
    judged_student: dict[str, TAScore] = {}
    judged_teacher: list[TAScore | None] = [None] * len(annotations)
    if "self_consistency" in settings.enabled:
        missing = [e for e in questions if e.id not in samples]
        if missing:
            samples.update(sample_questions(student, task, missing, settings, decoding, seed, cache))
        answers = {i: list(s.answers) for i, s in samples.items()}
    if "ta_student" in settings.enabled:
        outputs = {i: s.output for i, s in samples.items()}
        unjudged = [e for e in questions if e.id not in outputs]
        if unjudged:
            outputs.update(greedy_outputs(student, task, unjudged, decoding, cache))
        parsed = [split_rationale(outputs[e.id], task, e) for e in questions]
        scores = ta_scores(ta, [Attempt(e, r, a) for e, (r, a) in zip(questions, parsed)], cache,
                           "TA: scoring the student's outputs")
        judged_student = {e.id: s for e, s in zip(questions, scores)}
    if "ta_teacher" in settings.enabled:
        judged_teacher = list(ta_scores(
            ta, [Attempt(examples[a.example_id], a.rationale, a.answer) for a in annotations], cache,
            "TA: scoring the teacher's annotations"))
    return [
        Measured(
            annotation=a,
            consistency=summarise(answers[a.example_id], a.answer) if answers else None,
            student_output=outputs.get(a.example_id),
            ta_student=judged_student.get(a.example_id),
            ta_teacher=teacher,
            correct=a.answer == examples[a.example_id].answer if "oracle" in settings.enabled else None,
        )
        for a, teacher in zip(annotations, judged_teacher)
    ]
