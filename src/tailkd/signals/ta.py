"""The teaching assistant: a model that scores how much it believes an output (rationale + answer).

Two readings from one teacher-forced forward pass per text (batched, longest texts first):
- ``mean_logprob``: the target's log-likelihood given the question, averaged over its tokens;
- ``answer_prob``: the probability of the answer's tokens given the question and the rationale.
``confidence`` combines them (``ta.confidence``): ``likelihood`` = exp(mean_logprob), the per-token
geometric-mean probability; ``answer`` = answer_prob; ``mean`` (our default) = their average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tailkd.errors import ConfigError
from tailkd.models import Student
from tailkd.models.generation import eval_mode
from tailkd.models.logprobs import token_logprobs
from tailkd.models.padding import attention_mask, padded
from tailkd.progress import batches
from tailkd.signals.assistant import Attempt, TAScore, TeachingAssistant
from tailkd.tasks import Task
from tailkd.training.loss import IGNORE_INDEX, scored_positions
from tailkd.training.module import head_on

CONFIDENCES = ("mean", "likelihood", "answer")
Pieces = tuple[list[int], list[int], list[bool]]  # prompt ids, target ids, which target ids carry the answer


class LanguageModelTA:
    # 3: log-probabilities a few rows at a time (logsumexp, not log_softmax: rounding moves scores ~1e-6);
    # 2: longest-first batches, the LM head at target positions only; 1: every position, float32 on the CPU
    version = 3

    def __init__(self, model: Student, task: Task, *, batch_size: int = 16, confidence: str = "mean"):
        if confidence not in CONFIDENCES:
            raise ConfigError(f"ta.confidence={confidence!r} is unknown; choose one of {list(CONFIDENCES)}")
        self.model, self.task, self.batch_size, self.confidence = model, task, int(batch_size), confidence

    def texts(self, item: Attempt) -> tuple[str, str, str]:
        """What the TA reads for ``item``: the prompt, the target (as training renders it) and the
        answer span within it."""
        answer = item.answer or ""
        target = self.task.target(item.rationale, answer) if item.answer else (item.rationale or "")
        return self.task.prompt(item.example), target, answer

    def key(self, item: Attempt) -> tuple[str, str, str]:
        """Everything the score of ``item`` depends on besides the weights: the exact texts."""
        return self.texts(item)

    def _pieces(self, item: Attempt) -> Pieces:
        """Prompt ids, target ids, and which target ids carry the answer.

        The target is tokenised whole, as in training, and the answer's tokens are found by their
        character offsets: tokenising the answer on its own would split " -103" or " yes" into a lone
        space and the rest, a sequence the model never sees, and make every such answer improbable.
        """
        tok = self.model.tokenizer
        prompt_text, text, answer = self.texts(item)
        prompt = tok(prompt_text, add_special_tokens=True)["input_ids"]
        cut = text.rfind(answer) if answer else -1
        encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        is_answer = [cut >= 0 and start < cut + len(answer) and end > cut for start, end in encoded["offset_mapping"]]
        ids.append(tok.eos_token_id)
        is_answer.append(False)
        return prompt, ids, is_answer

    @torch.no_grad()
    def score(self, items: Sequence[Attempt], desc: str = "TA: scoring") -> list[TAScore]:
        """The scores of ``items``, in their order. Batches take the items longest first, so each pads to
        about its own length, and the first needs the most memory, where running out costs least."""
        pieces = [self._pieces(item) for item in items]
        order = sorted(range(len(items)), key=lambda i: -(len(pieces[i][0]) + len(pieces[i][1])))
        scores: list[TAScore] = [None] * len(items)  # type: ignore[list-item]
        with eval_mode(self.model.model):
            for batch in batches(order, self.batch_size, desc, unit="output"):
                for i, score in zip(batch, self._score_batch([items[i] for i in batch], [pieces[i] for i in batch])):
                    scores[i] = score
        return scores

    def _score_batch(self, items: Sequence[Attempt], pieces: Sequence[Pieces]) -> list[TAScore]:
        """One teacher-forced pass over the batch (right-padded to its longest)."""
        pad = self.model.tokenizer.pad_token_id
        causal = self.model.is_causal
        seqs = [p + t if causal else p for p, t, _ in pieces]
        targets = [([IGNORE_INDEX] * len(p) if causal else []) + t for p, t, _ in pieces]
        answer_masks = [([False] * len(p) if causal else []) + a for p, _, a in pieces]
        input_ids, attention = padded(seqs, pad), attention_mask(seqs)
        labels, answer = padded(targets, IGNORE_INDEX), padded(answer_masks, False, dtype=torch.bool)
        device = self.model.model.device
        logprob, labels, answer = self._target_logprobs(input_ids.to(device), attention.to(device), labels.to(device),
                                                        answer.to(device))
        valid = labels != IGNORE_INDEX
        mean_lps = ((logprob * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)).tolist()
        answer_lps = (logprob * answer).sum(dim=1).tolist()
        out = []
        for item, mean_lp, answer_lp in zip(items, mean_lps, answer_lps):
            answer_prob = math.exp(answer_lp) if item.answer else 0.0
            likelihood = math.exp(mean_lp)
            confidence = {"mean": (likelihood + answer_prob) / 2, "likelihood": likelihood, "answer": answer_prob}
            out.append(TAScore(confidence[self.confidence], mean_lp, answer_prob))
        return out

    def _target_logprobs(self, input_ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor,
                         answer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The log-probability of each target token (0 elsewhere), with the labels and answer marks aligned to
        it, all on the model's device. A decoder-only model's LM head and float32 log-softmax read only the
        positions whose next token is a target (the prompt and padding are most of the others: their logits
        would be most of the vocabulary-wide work, and of the memory); an encoder-decoder's decoder reads
        the targets only."""
        model = self.model.model
        if not self.model.is_causal:
            logits = model(input_ids=input_ids, attention_mask=attention, labels=labels).logits
            scored = labels != IGNORE_INDEX
            logits = logits[scored]
        else:
            scored = scored_positions(labels)
            with head_on(model, scored):
                logits = model(input_ids=input_ids, attention_mask=attention).logits
            if logits.dim() == 3:  # a model whose logits do not come from its output embeddings module
                logits = logits[scored]
            labels, answer = labels[:, 1:], answer[:, 1:]
            scored = scored[:, :-1]
        logprob = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
        logprob[scored] = token_logprobs(logits, labels[scored])
        return logprob, labels, answer


DEFAULT_JUDGE_PROMPT = (
    "Here is a question and an answer with its reasoning.\nQuestion: {{ question }}\nAnswer: {{ output }}\n"
    "Are the reasoning and the final answer both correct? Reply yes or no.")


class JudgeTA:
    """The TA asked, by prompt, whether an output's reasoning and answer are right: confidence =
    P(yes) / (P(yes) + P(no)) over the first token of its reply. Decoder models read the judge prompt
    through their chat template when they have one (an instruct model answers its own format), and the
    reply's first token is compared for " yes"/"yes"/"Yes" against " no"/"no"/"No" (each the first token
    of those words). Renormalising over the two keeps a model that prefers to start its reply with
    something else (a space, "The") from reading as doubt. One forward pass per batch."""

    version = 1

    def __init__(self, model: Student, task: Task, *, batch_size: int = 16, prompt: str = DEFAULT_JUDGE_PROMPT):
        import jinja2

        if not model.is_causal:
            raise ConfigError("ta.kind=judge needs a decoder-only model (arch: causal)")
        self.model, self.task, self.batch_size, self.prompt = model, task, int(batch_size), prompt
        self.confidence = "judge"
        self._template = jinja2.Template(prompt, undefined=jinja2.StrictUndefined)
        tok = model.tokenizer

        def first_tokens(words):
            return {tok(w, add_special_tokens=False)["input_ids"][0] for w in words}

        yes, no = first_tokens((" yes", "yes", "Yes", " Yes")), first_tokens((" no", "no", "No", " No"))
        # a first token both words share (a lone space in a small vocabulary) says nothing
        self._yes, self._no = sorted(yes - no), sorted(no - yes)
        if not self._yes or not self._no:
            raise ConfigError("ta.kind=judge: this tokenizer does not tell 'yes' from 'no' by their first tokens")

    def text(self, item: Attempt) -> str:
        output = self.task.target(item.rationale, item.answer).strip() if item.answer else (item.rationale or "")
        user = self._template.render(question=item.example.question, output=output)
        tok = self.model.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
        return user + "\n"

    def key(self, item: Attempt) -> str:
        return self.text(item)

    @torch.no_grad()
    def score(self, items: Sequence[Attempt], desc: str = "TA: scoring") -> list[TAScore]:
        tok, model = self.model.tokenizer, self.model.model
        out: list[TAScore] = []
        with eval_mode(model):
            for batch in batches(items, self.batch_size, desc, unit="output"):
                texts = [self.text(i) for i in batch]
                tok.padding_side = "left"  # the next token is read at the last position of every row
                encoded = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not tok.chat_template).to(model.device)
                logits = model(**encoded).logits[:, -1].float()
                probs = torch.softmax(logits, dim=-1)
                yes, no = probs[:, self._yes].sum(-1), probs[:, self._no].sum(-1)
                for y, n in zip(yes.tolist(), no.tolist()):
                    out.append(TAScore(y / (y + n) if y + n > 0 else 0.5, answer_prob=y))
        return out


def build_ta(cfg: dict, task: Task, cache_dir, tokenizer_texts: Sequence[str] = (),
             device: str | torch.device = "cpu") -> TeachingAssistant:
    """``ta.kind``: ``lm`` (a causal or seq2seq model, configured like a student, placed on ``device``:
    the run's, scoring outputs by their likelihood), ``judge`` (the same, asked whether an output is
    right) or ``verifier`` (rule-based arithmetic)."""
    kind = cfg.get("kind", "lm")
    if kind == "verifier":
        from tailkd.signals.verifier import ArithmeticVerifierTA

        return ArithmeticVerifierTA()
    if kind not in ("lm", "judge"):
        raise ConfigError(f"ta.kind={kind!r} is unknown; choose lm, judge or verifier")
    from tailkd.models import load_student

    model = load_student(cfg, cache_dir, tokenizer_texts)
    model.model.to(device)
    if kind == "judge":
        return JudgeTA(model, task, batch_size=int(cfg.get("batch_size", 16)),
                       prompt=cfg.get("judge_prompt") or DEFAULT_JUDGE_PROMPT)
    return LanguageModelTA(model, task, batch_size=int(cfg.get("batch_size", 16)),
                           confidence=cfg.get("confidence", "mean"))
