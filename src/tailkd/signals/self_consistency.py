"""The student's self-consistency: agreement among k answers it samples for the same question."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tailkd.models import Student, generate_texts
from tailkd.tasks import Example, Task


@dataclass(frozen=True)
class Consistency:
    answers: tuple[str | None, ...]  # the k extracted answers (None: no answer found)
    distinct: int  # number of distinct answers, unparseable ones counted as one more
    majority_share: float  # share of the k samples giving the most common answer
    majority_answer: str | None
    teacher_agreement: float | None  # share of samples agreeing with the teacher's answer


def summarise(answers: Sequence[str | None], teacher_answer: str | None = None) -> Consistency:
    counts = Counter(answers)
    parsed = Counter(a for a in answers if a is not None)
    majority_answer, majority_count = parsed.most_common(1)[0] if parsed else (None, 0)
    agreement = None if teacher_answer is None else sum(a == teacher_answer for a in answers) / len(answers)
    return Consistency(tuple(answers), len(counts), majority_count / len(answers), majority_answer, agreement)


@torch.no_grad()
def self_consistency(
    student: Student,
    task: Task,
    examples: Sequence[Example],
    *,
    k: int = 8,
    temperature: float = 0.7,
    batch_size: int = 16,
    prompt_prefix: str = "",
    teacher_answers: dict[str, str | None] | None = None,
    stop: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, Consistency]:
    """k samples per question, one batched ``generate`` call (``num_return_sequences=k``) per batch."""
    was_training = student.model.training
    student.model.eval()
    torch.manual_seed(seed)
    out: dict[str, Consistency] = {}
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        prompts = [prompt_prefix + task.prompt(e) for e in batch]
        texts = generate_texts(student, prompts, task.max_new_tokens, stop=stop, do_sample=True,
                               temperature=temperature, num_return_sequences=k)
        for i, example in enumerate(batch):
            answers = [task.extract_answer(t, example) for t in texts[i * k:(i + 1) * k]]
            teacher = (teacher_answers or {}).get(example.id)
            out[example.id] = summarise(answers, teacher)
    student.model.train(was_training)
    return out
