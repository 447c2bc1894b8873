"""The student's self-consistency: agreement among k answers it samples for the same question."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tailkd.models import Student, generate_texts
from tailkd.models.generation import longest_first
from tailkd.progress import batches
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


# how samples are drawn, in the signal cache's key (samples drawn another way are other samples): 3 decodes
# each question's greedy output as a (k+1)-th row beside its samples; 2 took batches of prompts longest
# first and decoded causal students with decode_causal; 1 was generate's order
SAMPLER = 3


@torch.no_grad()
def sample_texts(
    student: Student,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    k: int,
    temperature: float,
    batch_size: int,
    stop: Sequence[str] = (),
    seed: int = 0,
    desc: str = "sampling the student",
    and_greedy: bool = False,
) -> list[list[str]]:
    """k sampled continuations per prompt, in the order given; ``batch_size`` prompts a batch, taken
    longest first, each computed once for its k samples (``generate_texts``). ``and_greedy``: each
    prompt's list ends with its greedy continuation, a (k+1)-th text decoded in the same batch. The global RNG is seeded
    inside a fork and restored after, so what runs next (stage 2's dropout) does not depend on whether
    these samples were drawn or read from a cache. ``desc`` names the progress: sampling a whole pool
    on a CPU takes the better part of an hour."""
    devices = [student.model.device] if student.model.device.type == "cuda" else []
    order = longest_first(student.tokenizer, prompts)
    out: list[list[str]] = [[] for _ in prompts]
    per_prompt = k + int(and_greedy)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for batch in batches(order, batch_size, f"{desc} (k={k}{' + greedy' if and_greedy else ''})", unit="q"):
            texts = generate_texts(student, [prompts[i] for i in batch], max_new_tokens, stop=stop, do_sample=True,
                                   temperature=temperature, num_return_sequences=k, and_greedy=and_greedy)
            for j, i in enumerate(batch):
                out[i] = texts[j * per_prompt:(j + 1) * per_prompt]
    return out


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
    """Each question's :class:`Consistency` over k samples of the student."""
    prompts = [prompt_prefix + task.prompt(e) for e in examples]
    samples = sample_texts(student, prompts, task.max_new_tokens, k=k, temperature=temperature,
                           batch_size=batch_size, stop=stop, seed=seed)
    return {
        e.id: summarise([task.extract_answer(t, e) for t in texts], (teacher_answers or {}).get(e.id))
        for e, texts in zip(examples, samples)
    }
