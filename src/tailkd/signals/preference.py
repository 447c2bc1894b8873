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
from tailkd.models.generation import cache_argument, eval_mode, pad_id, prefill_ids
from tailkd.models.logprobs import token_logprobs
from tailkd.models.padding import attention_mask, padded
from tailkd.progress import batches
from tailkd.signals.cache import SignalCache
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
                     *, batch_size: int, stop: Sequence[str] = (), cache: SignalCache | None = None,
                     desc: str = "ARTE: one-shot answers") -> list[list[bool]]:
    """``correct[d][q]``: shown ``demos[d]`` alone, the student answers ``questions[q]`` right (greedy).
    A batch holds one demonstration's prompts, so its rows share the demonstration's prefix, which
    generation computes once (``bench/preference_scoring.py``). The texts are cached (``cache``), the
    answers extracted now."""
    cache = cache or SignalCache(None)
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]

    def generate() -> list[str]:
        texts: list[str] = []
        for batch in batches(prompts, batch_size, desc, unit="prompt", group=len(questions)):
            texts += generate_texts(student, batch, task.max_new_tokens, stop=stop)
        return texts

    # the batch size is in the key: a row's greedy tokens can change with the rows padded beside it
    key = {"model": cache.model_id(student.model), "prompts": prompts, "max_new_tokens": task.max_new_tokens,
           "stop": list(stop), "batch_size": batch_size, "group": len(questions)} if cache.folder else {}
    texts = cache.fetch("one_shot_texts", key, generate)
    n = len(questions)
    return [[task.extract_answer(texts[d * n + i], q) == q.answer for i, q in enumerate(questions)]
            for d in range(len(demos))]


def one_shot_scores(student: Student, task: Task, demos: Sequence[Demonstration], questions: Sequence[Example],
                    *, batch_size: int, stop: Sequence[str] = (), cache: SignalCache | None = None) -> list[Preference]:
    """Each demonstration's :class:`Preference` on ``questions``. With a ``cache``, a rerun (or ARTE's
    other ``align`` at the same seed: the same drafts and student) reads both passes back."""
    if not demos:
        return []
    cache = cache or SignalCache(None)
    correct = one_shot_correct(student, task, demos, questions, batch_size=batch_size, stop=stop, cache=cache)
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    answers = [" " + task.answer_target(q.answer).strip() for _ in demos for q in questions]
    n, share = len(questions), True
    key = {"model": cache.model_id(student.model), "prompts": prompts, "continuations": answers,
           "batch_size": batch_size, "group": n, "share_prefix": share} if cache.folder else {}
    logps = cache.fetch("answer_logprobs", key, lambda: continuation_logprobs(
        student, prompts, answers, batch_size=batch_size, group=n, share_prefix=share))
    return [Preference(sum(row) / n if n else 0.0, sum(logps[d * n:(d + 1) * n]) / n if n else 0.0)
            for d, row in enumerate(correct)]


@torch.no_grad()
def continuation_logprobs(student: Student, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int, group: int | None = None, share_prefix: bool = True) -> list[float]:
    """log p(continuation | prompt) under the student, one teacher-forced pass per batch. ``group``: a
    batch holds prompts of one group (consecutive runs of that many) only, as :func:`one_shot_correct`'s
    do. A decoder computes the tokens every prompt of a batch begins with (``share_prefix``: a one-shot
    prompt's demonstration, most of it) once, then each row's rest after it, left-padded, with positions
    counted from each row's first real token; it keeps the logits of the last few positions only: the
    continuations end every row, and a vocabulary of 50k-150k entries times every position of 32
    one-shot prompts would cost gigabytes. An encoder-decoder reads the prompt and scores the
    continuation as its target."""
    tok, model = student.tokenizer, student.model
    out: list[float] = []
    pairs = list(zip(prompts, continuations))
    with eval_mode(model):
        for batch in batches(pairs, batch_size, "ARTE: answer likelihoods", unit="prompt", group=group):
            pieces = [(tok(p, add_special_tokens=True)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
                      for p, c in batch]
            out += _causal_logprobs(model, tok, pieces, share_prefix) if student.is_causal else \
                _seq2seq_logprobs(model, tok, pieces)
    return out


def _causal_logprobs(model, tok, pieces, share_prefix: bool) -> list[float]:
    from transformers import DynamicCache

    keep = max(len(c) for _, c in pieces) + 1
    # a row's prompt keeps its last token out of the shared prefix: its logits predict the continuation
    logits, _, _ = prefill_ids(model, [p + c for p, c in pieces], pad_id(tok), DynamicCache(config=model.config),
                               cache_argument(model), share_prefix=share_prefix, keep=keep,
                               shareable=[len(p) - 1 for p, _ in pieces], keep_cache=False)
    logits = logits.float().cpu()
    out = []
    for i, (_, c) in enumerate(pieces):
        # the kept logits at k-1-len(c) .. k-2 predict the continuation's tokens
        rows = logits[i, keep - 1 - len(c): keep - 1]
        out.append(token_logprobs(rows, torch.tensor(c)).sum().item())
    return out


def _seq2seq_logprobs(model, tok, pieces) -> list[float]:
    prompts, continuations = [p for p, _ in pieces], [c for _, c in pieces]
    ids, mask, labels = padded(prompts, tok.pad_token_id), attention_mask(prompts), padded(continuations, -100)
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                   labels=labels.to(model.device)).logits.float().cpu()
    logp = token_logprobs(logits.flatten(0, 1), labels.clamp(min=0).flatten()).view(labels.shape)
    return (logp * (labels != -100)).sum(dim=1).tolist()


def preference_set(student: Student, task: Task, candidates: Sequence[Example], probes: Sequence[Demonstration],
                   *, size: int, selection: str, batch_size: int, stop: Sequence[str] = (),
                   cache: SignalCache | None = None) -> list[Example]:
    """``size`` questions of ``candidates`` (already in a seeded random order)."""
    if selection not in SELECTIONS:
        raise ConfigError(f"method.preference_selection={selection!r} is unknown; choose one of {list(SELECTIONS)}")
    if selection == "random" or not probes or len(candidates) <= size:
        return list(candidates[:size])
    correct = one_shot_correct(student, task, probes, candidates, batch_size=batch_size, stop=stop, cache=cache,
                               desc="ARTE: choosing the preference set")
    shares = [sum(row[i] for row in correct) / len(correct) for i in range(len(candidates))]
    order = sorted(range(len(candidates)), key=lambda i: -shares[i] * (1 - shares[i]))  # stable: ties keep order
    return [candidates[i] for i in order[:size]]


def shuffled(examples: Sequence[Example], seed: int) -> list[Example]:
    return random.Random(seed).sample(list(examples), len(examples))
