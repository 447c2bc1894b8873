"""Batched generation for decoder-only and encoder-decoder students.

Decoder-only students run :func:`decode_causal`, our own loop over the model's forward with a
transformers ``DynamicCache``: each prompt is computed once and its cache shared by its k samples
(``generate`` with ``num_return_sequences=k`` computes it k times), and a row leaves the batch as soon
as its text is settled (EOS, or a stop string that no stop string begun before it could still precede),
where ``generate`` runs every row until the last one ends. Encoder-decoder students, several processes
(sharded weights need every rank in every forward pass) and callers that need ``generate``'s logits
processors go through :func:`hf_generate_texts`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence

import torch

from tailkd.models.student import Student


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Everything before the first stop string: a student that has not learnt to end its answer
    goes on with a new question, which must not be scored."""
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def settled_by_stop(text: str, stop: Sequence[str]) -> bool:
    """Whether ``text``'s cut at its first stop string can no longer move: a stop string is found, and no
    stop string that the text's end has begun (its end is the start of one) starts before it. ``text``
    may be the tail of a longer text."""
    found = [i for i in (text.find(s) for s in stop) if i != -1]
    if not found:
        return False
    cut = min(found)
    return not any(s.startswith(text[p:]) for s in stop for p in range(max(0, len(text) - len(s) + 1), cut))


def longest_first(tokenizer, prompts: Sequence[str]) -> list[int]:
    """The indices of ``prompts`` from the most tokens to the fewest (ties in the order given): batches
    taken in this order pad each prompt to a length near its own, and the largest batch (the most
    memory) comes first, where running out of it costs least."""
    if not prompts:
        return []
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    return sorted(range(len(prompts)), key=lambda i: -lengths[i])


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for the block (T5 and LoRA students have it), the model's mode restored after:
    a generation in train mode is neither greedy nor reproducible."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate_texts(
    student: Student,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    stop: Sequence[str] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    and_greedy: bool = False,
) -> list[str]:
    """Continuations of ``prompts`` (``num_return_sequences`` per prompt, prompt-major order), cut at
    the first stop string and stripped, all prompts in one batch: callers batch, this function does
    not split. Sampling is plain multinomial sampling at ``temperature`` (no top-k, no top-p).
    ``and_greedy`` (with ``do_sample``): each prompt's samples are followed by its greedy continuation,
    decoded in the same batch as one more row on the prompt's cache."""
    and_greedy = and_greedy and do_sample
    if not student.is_causal or _world_size() > 1:
        texts = hf_generate_texts(student, prompts, max_new_tokens, stop=stop, do_sample=do_sample,
                                  temperature=temperature, num_return_sequences=num_return_sequences)
        if not and_greedy:
            return texts
        greedy = hf_generate_texts(student, prompts, max_new_tokens, stop=stop)
        k = num_return_sequences
        return [t for i, g in enumerate(greedy) for t in (*texts[i * k:(i + 1) * k], g)]
    with eval_mode(student.model):
        ids = decode_causal(student, prompts, max_new_tokens, k=num_return_sequences, stop=stop,
                            temperature=temperature if do_sample else 0.0, and_greedy=and_greedy)
    return _decoded(student.tokenizer, ids, stop)


@torch.no_grad()
def hf_generate_texts(
    student: Student,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    stop: Sequence[str] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
) -> list[str]:
    """:func:`generate_texts` through one transformers ``generate`` call: for encoder-decoder students,
    several processes, and models whose ``generate`` adds its own logits processors."""
    tokenizer, model = student.tokenizer, student.model
    # decoder-only models continue from the last position of each row, so pad on the left
    tokenizer.padding_side = "left" if student.is_causal else "right"
    encoded = tokenizer(list(prompts), return_tensors="pt", padding=True).to(model.device)
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_return_sequences=num_return_sequences,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if do_sample:
        kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    if _world_size() > 1:  # sharded weights (FSDP) need every rank in every forward pass, even one whose rows ended
        kwargs["synced_gpus"] = True
    with eval_mode(model):
        output = model.generate(**encoded, **kwargs)
    if student.is_causal:
        output = output[:, encoded["input_ids"].shape[1]:]
    return _decoded(tokenizer, output, stop)


def _decoded(tokenizer, ids, stop: Sequence[str]) -> list[str]:
    """The texts of generated ``ids``, each cut at its first stop string and stripped: what every
    decoding path returns, so that the two paths' outputs compare equal."""
    return [cut_at_stop(t, stop).strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


@torch.no_grad()
def decode_causal(student: Student, prompts: Sequence[str], max_new_tokens: int, *, k: int = 1,
                  stop: Sequence[str] = (), temperature: float = 0.0, and_greedy: bool = False,
                  share_prefix: bool = True) -> list[list[int]]:
    """The new token ids of ``k`` continuations per prompt (prompt-major), EOS included where one ended
    a row: greedy at ``temperature`` 0, else sampled from softmax(logits / temperature) (:class:`NextTokens`).
    ``and_greedy``: one more row per prompt, after its k, decoded greedily: the student's own output
    costs one row more in a batch that computes the prompt anyway, not a pass of its own. The samples
    draw the same random numbers with or without it.

    The prompts are computed once, left-padded, with positions counted from each row's first real
    token as ``generate`` counts them; the cache is then repeated k times (``share_prefix``: the
    tokens every prompt begins with are computed once, :func:`_prefill`). A row leaves the batch
    (its cache rows dropped) once it ends: EOS, ``max_new_tokens``, or a stop string settled in the
    text decoded so far (:func:`settled_by_stop`)."""
    tokenizer, model = student.tokenizer, student.model
    per_prompt = k + int(and_greedy)
    n_rows = len(prompts) * per_prompt
    produced: list[list[int]] = [[] for _ in range(n_rows)]
    if n_rows == 0 or max_new_tokens < 1:
        return produced
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache_arg = cache_argument(model)
    logits, mask, positions = _prefill(model, tokenizer, prompts, cache, cache_arg, share_prefix)
    cache.batch_repeat_interleave(per_prompt)
    logits = logits.repeat_interleave(per_prompt, dim=0)
    mask = mask.repeat_interleave(per_prompt, dim=0)
    position = positions[:, -1].repeat_interleave(per_prompt, dim=0) + 1
    live = list(range(n_rows))  # the output row of each row of the batch
    next_tokens = NextTokens(temperature)
    for step in range(max_new_tokens):
        greedy = torch.tensor([row % per_prompt == k for row in live], device=logits.device) if and_greedy else None
        tokens = next_tokens(logits, greedy)
        for row, token in zip(live, tokens.tolist()):
            produced[row].append(token)
        ended = ended_rows(tokenizer, [produced[row] for row in live], stop)
        if step == max_new_tokens - 1 or len(ended) == len(live):
            break
        if ended:
            keep = torch.tensor([j for j in range(len(live)) if j not in ended], device=tokens.device)
            cache.batch_select_indices(keep)
            tokens, mask, position = tokens[keep], mask[keep], position[keep]
            live = [live[j] for j in keep.tolist()]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position[:, None],
                       use_cache=True, **{cache_arg: cache}).logits[:, -1]
        position = position + 1
    return produced


# fewer shared tokens are not worth a forward pass of their own
MIN_SHARED_TOKENS = 16


def _prefill(model, tokenizer, prompts: Sequence[str], cache, cache_arg: str,
             share_prefix: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`prefill_ids` of the tokenised prompts, each row's last logits."""
    ids = tokenizer(list(prompts))["input_ids"]
    logits, mask, positions = prefill_ids(model, ids, pad_id(tokenizer), cache, cache_arg, share_prefix=share_prefix)
    return logits[:, -1], mask, positions


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def prefill_ids(model, ids: Sequence[list[int]], pad: int, cache, cache_arg: str, *, share_prefix: bool = True,
                keep: int = 1, shareable: Sequence[int] | None = None,
                keep_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows' pass: the logits of the last ``keep`` columns, the attention mask and positions, the
    keys and values left in ``cache`` (``keep_cache=False``: only what the shared prefix needs). With
    ``share_prefix``, the longest run of tokens every row begins with (a few-shot teacher's instruction
    and exemplars, a one-shot prompt's demonstration, a chat template's system turn) is computed once and
    its cache copied to every row; the rest of each row follows it, left-padded: ``[prefix][padding]
    [suffix]``, the padding masked out and the positions counting real tokens only, so each row sees what
    it sees unshared (the same numbers, up to the rounding of two passes instead of one). ``shareable``:
    how many of each row's tokens the prefix may take at most (default all but the last ``keep``); the
    rest are computed in the rows' own pass, so a row with fewer than ``keep`` there has padding at the
    front of its columns."""
    shareable = shareable if shareable is not None else [len(row) - keep for row in ids]
    shared = _common_prefix(ids) if share_prefix and len(ids) > 1 else 0
    shared = min(shared, *shareable)
    if shared < MIN_SHARED_TOKENS:
        shared = 0
    else:
        prefix = torch.tensor([ids[0][:shared]], device=model.device)
        model(input_ids=prefix, position_ids=torch.arange(shared, device=model.device)[None], use_cache=True,
              logits_to_keep=1, **{cache_arg: cache})
        cache.batch_repeat_interleave(len(ids))
    rest = [row[shared:] for row in ids]
    width = max(map(len, rest))
    suffix = torch.tensor([[pad] * (width - len(r)) + r for r in rest], device=model.device)
    mask = torch.tensor([[1] * shared + [0] * (width - len(r)) + [1] * len(r) for r in rest], device=model.device)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, shared:]
    cached = {"use_cache": True, cache_arg: cache} if keep_cache or shared else {"use_cache": False}
    logits = model(input_ids=suffix, attention_mask=mask, position_ids=positions, logits_to_keep=keep,
                   **cached).logits[:, -keep:]
    return logits, mask, positions


def _common_prefix(rows: Sequence[list[int]]) -> int:
    """How many tokens every row begins with."""
    first, n = rows[0], min(map(len, rows))
    for i in range(n):
        if any(row[i] != first[i] for row in rows[1:]):
            return i
    return n


def ended_rows(tokenizer, rows: Sequence[list[int]], stop: Sequence[str]) -> set[int]:
    """The indices of ``rows`` (token ids so far) that have ended: on EOS, or on a stop string settled in
    the text of their last tokens (enough for the longest stop string, as a token holds at least a
    character bar a few byte pieces: a stop string missed there only keeps its row going, and the cut is
    made on the whole text)."""
    ended = {j for j, ids in enumerate(rows) if ids[-1] == tokenizer.eos_token_id}
    if stop:
        tail = max(map(len, stop)) + 4
        open_rows = [j for j in range(len(rows)) if j not in ended]
        texts = tokenizer.batch_decode([rows[j][-tail:] for j in open_rows], skip_special_tokens=True)
        ended |= {j for j, text in zip(open_rows, texts) if settled_by_stop(text, stop)}
    return ended


class NextTokens:
    """One token per row from a step's last logits: the most likely at ``temperature`` 0, else a draw from
    softmax(logits / temperature), by inverting its cumulative sum at a uniform point.

    ``generate`` draws with ``torch.multinomial``, whose exponential noise over the whole vocabulary costs
    on a CPU ten times the rest of a draw (65 of 75 ms for 64 rows of 49152 logits, one thread), as much
    as the model's forward at that batch. The sum runs in float64: in float32 its rounding would move
    ~3e-4 of the probability (total variation) between tokens, in float64 as little as the float32
    softmax does. Its buffers are kept from step to step: fresh ones (25 MB at 64 rows) cost more in a
    CPU's page faults than the arithmetic."""

    def __init__(self, temperature: float):
        self.temperature = temperature
        self._weights: torch.Tensor | None = None
        self._cumulative: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, greedy: torch.Tensor | None = None) -> torch.Tensor:
        """``greedy``: a mask of rows that take the most likely token whatever the temperature; only
        the others draw random numbers."""
        if self.temperature <= 0:
            return logits.argmax(dim=-1)
        if greedy is not None and bool(greedy.any()):
            tokens = torch.empty(len(logits), dtype=torch.long, device=logits.device)
            tokens[greedy] = logits[greedy].argmax(dim=-1)
            sampled = ~greedy
            if bool(sampled.any()):
                tokens[sampled] = self(logits[sampled])
            return tokens
        if self._weights is None or self._weights.shape[0] < logits.shape[0]:
            self._weights = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
            self._cumulative = torch.empty(logits.shape, dtype=torch.float64, device=logits.device)
        weights, cumulative = self._weights[: len(logits)], self._cumulative[: len(logits)]
        weights.copy_(logits).div_(self.temperature)
        weights.sub_(weights.amax(dim=-1, keepdim=True)).exp_()
        cumulative.copy_(weights).cumsum_(dim=-1)  # in place: cumsum's own float64 copy is a fresh buffer
        point = torch.rand(len(cumulative), 1, dtype=torch.float64, device=cumulative.device) * cumulative[:, -1:]
        # right: token i owns [the weight before it, that plus its own), so a weight of 0 is never drawn
        drawn = torch.searchsorted(cumulative, point, right=True).squeeze(1)
        return drawn.clamp_(max=cumulative.shape[1] - 1)


def cache_argument(model: torch.nn.Module) -> str:
    """The forward's keyword for the KV cache: transformers 5 renamed ``past_key_values`` to ``cache``
    (a PEFT model passes it on to its base model, whose signature tells)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _world_size() -> int:
    """Processes in the initialised process group, else 1 (``tailkd.training.distributed.world``'s second
    half: models sit below training and do not import it)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
