"""What the student prefers to learn from (ARTE): its one-shot in-context accuracy on a preference set
when one (question, rationale) is its only demonstration.

Every demonstration x preference-question prompt is generated greedily in batches of
``batch_size`` prompts; ``batch_size=1`` is the per-prompt loop (``bench/preference_scoring.py``
compares the two). The preference set is drawn from training questions with gold answers, so it is
disjoint from the test split: ``random``, or ``varied`` (our default, where the paper fits an IRT
model): the candidates whose answers change most across a few probe demonstrations, i.e. where the
choice of demonstration matters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tailkd.errors import ConfigError
from tailkd.models import Student, generate_texts
from tailkd.models.generation import eval_mode
from tailkd.tasks import Example, Task

SELECTIONS = ("varied", "random")


@dataclass(frozen=True)
class Preference:
    """How well a demonstration teaches: the student's one-shot accuracy on the preference set (the
    paper's score), and the mean log-probability it gives the gold answer sentence right after the
    one-shot prompt, which breaks ties (with 40 questions accuracy has 41 values; drafts tie often)."""

    accuracy: float
    likelihood: float

    @property
    def rank(self) -> tuple[float, float]:
        return self.accuracy, self.likelihood


@dataclass(frozen=True)
class Demonstration:
    question: str
    target: str  # what the student would learn: the rationale and its answer sentence, as training renders it


def one_shot_prompt(task: Task, demo: Demonstration, example: Example) -> str:
    return task.prompt_for(demo.question) + demo.target + "\n\n" + task.prompt(example)


def one_shot_correct(student: Student, task: Task, demos: Sequence[Demonstration], questions: Sequence[Example],
                     *, batch_size: int, stop: Sequence[str] = ()) -> list[list[bool]]:
    """``correct[d][q]``: shown ``demos[d]`` alone, the student answers ``questions[q]`` right (greedy)."""
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        texts += generate_texts(student, prompts[start:start + batch_size], task.max_new_tokens, stop=stop)
    n = len(questions)
    return [[task.extract_answer(texts[d * n + i], q) == q.answer for i, q in enumerate(questions)]
            for d in range(len(demos))]


def one_shot_scores(student: Student, task: Task, demos: Sequence[Demonstration], questions: Sequence[Example],
                    *, batch_size: int, stop: Sequence[str] = ()) -> list[Preference]:
    """Each demonstration's :class:`Preference` on ``questions``."""
    if not demos:
        return []
    correct = one_shot_correct(student, task, demos, questions, batch_size=batch_size, stop=stop)
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    answers = [" " + task.answer_target(q.answer).strip() for _ in demos for q in questions]
    logps = continuation_logprobs(student, prompts, answers, batch_size=batch_size)
    n = len(questions)
    return [Preference(sum(row) / n if n else 0.0, sum(logps[d * n:(d + 1) * n]) / n if n else 0.0)
            for d, row in enumerate(correct)]


@torch.no_grad()
def continuation_logprobs(student: Student, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int) -> list[float]:
    """log p(continuation | prompt) under the student, one teacher-forced pass per batch (decoder-only;
    an encoder-decoder reads the prompt and scores the continuation as its target)."""
    tok, model = student.tokenizer, student.model
    out: list[float] = []
    with eval_mode(model):
        for start in range(0, len(prompts), batch_size):
            pieces = [(tok(p, add_special_tokens=True)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
                      for p, c in zip(prompts[start:start + batch_size], continuations[start:start + batch_size])]
            if student.is_causal:
                seqs = [p + c for p, c in pieces]
                labels = [[-100] * len(p) + c for p, c in pieces]
            else:
                seqs, labels = [p for p, _ in pieces], [c for _, c in pieces]
            width, lwidth = max(map(len, seqs)), max(map(len, labels))
            ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            target = torch.full((len(seqs), lwidth), -100, dtype=torch.long)
            for i, (s, lab) in enumerate(zip(seqs, labels)):
                ids[i, : len(s)], mask[i, : len(s)], target[i, : len(lab)] = torch.tensor(s), 1, torch.tensor(lab)
            kwargs = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}
            if not student.is_causal:
                kwargs["labels"] = target.to(model.device)
            logits = model(**kwargs).logits.float().cpu()
            if student.is_causal:
                logits, target = logits[:, :-1], target[:, 1:]
            logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
            out += (logp * (target != -100)).sum(dim=1).tolist()
    return out


def preference_set(student: Student, task: Task, candidates: Sequence[Example], probes: Sequence[Demonstration],
                   *, size: int, selection: str, batch_size: int, stop: Sequence[str] = ()) -> list[Example]:
    """``size`` questions of ``candidates`` (already in a seeded random order)."""
    if selection not in SELECTIONS:
        raise ConfigError(f"method.preference_selection={selection!r} is unknown; choose one of {list(SELECTIONS)}")
    if selection == "random" or not probes or len(candidates) <= size:
        return list(candidates[:size])
    correct = one_shot_correct(student, task, probes, candidates, batch_size=batch_size, stop=stop)
    shares = [sum(row[i] for row in correct) / len(correct) for i in range(len(candidates))]
    order = sorted(range(len(candidates)), key=lambda i: -shares[i] * (1 - shares[i]))  # stable: ties keep order
    return [candidates[i] for i in order[:size]]


def shuffled(examples: Sequence[Example], seed: int) -> list[Example]:
    return random.Random(seed).sample(list(examples), len(examples))
