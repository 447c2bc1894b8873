"""How unsure a student is of its own reasoning (ELAD's explanation-guided uncertainty).

- *within* an explanation: the student writes its explanation (greedy), it is split into steps, and
  after each step prefix the student is asked for its answer (``" The answer is"`` and a few greedy
  tokens). The more often that answer changes along the steps, the less the explanation supports its
  conclusion: uncertainty = changes / steps (``prefix``). Variant ``removal``: the answer with each
  step left out in turn; uncertainty = share of removals that change the answer read after all steps.
- *across* explanations: the answers of k sampled explanations; disagreement = 1 - majority share.
- ``answer_entropy``: the entropy of those k answers over log k (classic uncertainty sampling).
Every generation is batched over questions and steps (``bench/step_scoring.py`` compares it with a
loop). An explanation without steps has nothing to judge: its within-uncertainty is 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tailkd.models import Student, generate_texts
from tailkd.progress import batches
from tailkd.signals.self_consistency import sample_texts
from tailkd.tasks import Example, Task
from tailkd.tasks.rationale import SPLITS, split_steps  # noqa: F401 (re-exported)
from tailkd.teachers.annotation import split_rationale

VARIANTS = ("prefix", "removal")


@dataclass
class Explained:
    """A question, the student's explanation of it, and what the uncertainty measures found."""

    example: Example
    text: str  # the student's whole greedy output
    steps: list[str]
    step_answers: list[str | None]  # prefix: after 0..n steps; removal: after all steps, then without step 1..n
    final_answer: str | None
    sampled_answers: list[str | None]
    within: float = 0.0
    across: float = 0.0
    entropy: float = 0.0
    uncertainty: float = 0.0

    @property
    def usable(self) -> bool:
        """An explanation a teacher can revise: it has steps."""
        return bool(self.steps)

    def to_row(self) -> dict:
        return {"id": self.example.id, "question": self.example.question, "explanation": self.text,
                "steps": self.steps, "step_answers": self.step_answers, "final_answer": self.final_answer,
                "sampled_answers": self.sampled_answers, "within": self.within, "across": self.across,
                "entropy": self.entropy, "uncertainty": self.uncertainty}


def changes(trajectory: Sequence[str | None]) -> float:
    """Share of consecutive steps whose answer differs from the one before (None is an answer too)."""
    if len(trajectory) < 2:
        return 1.0
    return sum(a != b for a, b in zip(trajectory, trajectory[1:])) / (len(trajectory) - 1)


def removal_flips(without: Sequence[str | None], full: str | None) -> float:
    return sum(a != full for a in without) / len(without) if without else 1.0


def disagreement(answers: Sequence[str | None]) -> float:
    if not answers:
        return 1.0
    return 1.0 - Counter(answers).most_common(1)[0][1] / len(answers)


def entropy(answers: Sequence[str | None]) -> float:
    """Entropy of the answers' distribution over log k (0: all agree, 1: all differ)."""
    if len(answers) < 2:
        return 0.0
    counts = Counter(answers).values()
    h = -sum(c / len(answers) * math.log(c / len(answers)) for c in counts)
    return h / math.log(len(answers))


def _probe_prompts(task: Task, example: Example, steps: Sequence[str], variant: str, probe: str) -> list[str]:
    base = task.prompt(example)
    if variant == "prefix":
        kept = [list(steps[:i]) for i in range(len(steps) + 1)]
    else:  # all steps first: the answer the removals are compared with, read the same way they are
        kept = [list(steps)] + [list(steps[:i]) + list(steps[i + 1:]) for i in range(len(steps))]
    return [base + (" " + " ".join(k) if k else "") + probe for k in kept]


def step_answers(student: Student, task: Task, examples: Sequence[Example], steps: Sequence[Sequence[str]], *,
                 variant: str, probe: str, probe_tokens: int, batch_size: int) -> list[list[str | None]]:
    """For each question, the answers after each step prefix (or without each step), all prompts of
    all questions batched together."""
    prompts, owner = [], []
    for i, (example, its_steps) in enumerate(zip(examples, steps)):
        for prompt in _probe_prompts(task, example, its_steps, variant, probe):
            prompts.append(prompt)
            owner.append(i)
    texts: list[str] = []
    for batch in batches(prompts, batch_size, f"ELAD: answers after each step ({variant})", unit="prompt"):
        texts += generate_texts(student, batch, probe_tokens, stop=["\n"])
    out: list[list[str | None]] = [[] for _ in examples]
    for i, text in zip(owner, texts):
        out[i].append(task.extract_answer(probe + " " + text, examples[i]))
    return out


def explain(student: Student, task: Task, examples: Sequence[Example], *, stop: Sequence[str], batch_size: int,
            split: str = "sentence", variant: str = "prefix", probe: str = " The answer is", probe_tokens: int = 8,
            k: int = 4, temperature: float = 0.7, seed: int = 0) -> list[Explained]:
    """Each question's explanation, its steps, the step answers and k sampled answers, with every
    uncertainty filled in (see the module docstring)."""
    prompts = [task.prompt(e) for e in examples]
    texts: list[str] = []
    for batch in batches(prompts, batch_size, "ELAD: the student's explanations", unit="q"):
        texts += generate_texts(student, batch, task.max_new_tokens, stop=stop)
    parsed = [split_rationale(t, task, e) for t, e in zip(texts, examples)]
    # an answer alone ("(A)") is no step: revising it would ask the teacher to confirm the student's answer
    steps = [[] if task.answer_only(rationale, e) else split_steps(rationale, split)
             for e, (rationale, _) in zip(examples, parsed)]
    answers = step_answers(student, task, examples, steps, variant=variant, probe=probe, probe_tokens=probe_tokens,
                           batch_size=batch_size)
    samples = sample_texts(student, prompts, task.max_new_tokens, k=k, temperature=temperature,
                           batch_size=batch_size, stop=stop, seed=seed,
                           desc="ELAD: sampling explanations") if k >= 2 else [[] for _ in examples]
    out = []
    for example, text, (_, final), its_steps, its_answers, its_samples in zip(
            examples, texts, parsed, steps, answers, samples):
        sampled = [task.extract_answer(s, example) for s in its_samples]
        within = 1.0 if not its_steps else (changes(its_answers) if variant == "prefix"
                                            else removal_flips(its_answers[1:], its_answers[0]))
        out.append(Explained(example, text, its_steps, its_answers, final, sampled, within=within,
                             across=disagreement(sampled) if sampled else 0.0, entropy=entropy(sampled)))
    return out
