"""A local transformers model as the teacher: free per call, batched, one model in memory."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from tailkd.errors import ConfigError
from tailkd.models.embedded import EMBEDDED
from tailkd.models.generation import cut_at_stop, ended_rows, generate_texts, hf_generate_texts
from tailkd.models.lora import serve_in_place
from tailkd.models.student import DTYPES, Student, load_student
from tailkd.teachers.backends.protocol import Bound, Completion, TeacherCallError, TeacherRequest

log = logging.getLogger(__name__)

ARCHS = ("causal", "seq2seq")
SOURCES = ("hub", "embedded", "tiny")  # tiny: a random model for smoke runs and tests


def _default_cache_dir() -> Path:
    """Where embedded models are converted when no cache_dir is given: as ``paths.cache_dir``."""
    configured = os.environ.get("TAILKD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tailkd"


def sample_seed(key: str, seed: int = 0) -> int:
    """A 63-bit seed from a request's content key (which already holds the sample index)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class _Row:
    """How one row of a batch is decoded: temperature 0 is greedy; ``seed`` drives its sampling."""

    temperature: float
    max_new_tokens: int
    seed: int | None


class _PerRowDecoding(LogitsProcessor):
    """Per-row sampling and length limits inside one greedy ``generate`` call.

    A sampled row gets its logits divided by its temperature plus Gumbel noise drawn from its own
    ``torch.Generator``; the argmax that greedy search then takes is an exact sample of
    ``softmax(logits / T)`` (the Gumbel-max trick). Noise for row i at step t depends only on row i's
    seed and t, never on the other rows of the batch or on the global torch RNG, so a request gets
    the same sample whichever batch it lands in (up to floating-point effects of padding on the
    logits). Greedy rows are left alone. A row whose own ``max_new_tokens`` is below the batch's is
    forced to end (EOS) once it has that many tokens.
    """

    def __init__(self, rows: Sequence[_Row], eos_token_id: int | None):
        self.rows = list(rows)
        self.eos_token_id = eos_token_id
        self.max_new_tokens = max(row.max_new_tokens for row in self.rows)
        self._generators: list[torch.Generator | None] | None = None
        self._start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self._start is None:
            self._start = input_ids.shape[1]
            self._generators = []
            for row in self.rows:
                if row.seed is None:
                    self._generators.append(None)
                else:
                    generator = torch.Generator(device=scores.device)
                    generator.manual_seed(row.seed)
                    self._generators.append(generator)
        produced = input_ids.shape[1] - self._start
        scores = scores.clone()
        for i, (row, generator) in enumerate(zip(self.rows, self._generators)):
            if generator is not None:
                noise = torch.empty(scores.shape[1], device=scores.device, dtype=torch.float32)
                noise.exponential_(generator=generator)  # -log(Exp(1)) is Gumbel(0, 1)
                scores[i] = scores[i].float() / row.temperature - noise.clamp_min(1e-30).log()
            if produced >= row.max_new_tokens and self.eos_token_id is not None:
                scores[i] = float("-inf")
                scores[i, self.eos_token_id] = 0.0
        return scores


class _RowStops(StoppingCriteria):
    """Ends each row of a ``generate`` call once its text is settled at one of its own stop strings, as
    our own decoding loop does (:func:`ended_rows`): the rest would be cut, so it is never computed."""

    def __init__(self, tokenizer, stops: Sequence[Sequence[str]]):
        self.tokenizer = tokenizer
        self.stops = [tuple(stop) for stop in stops]
        self._start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        if self._start is None:  # called after each new token: the first call's ids are the prompt and one
            self._start = input_ids.shape[1] - 1  # (a decoder's own ids, for an encoder-decoder)
        produced = input_ids[:, self._start:].tolist()
        done = [bool(stop) and bool(ended_rows(self.tokenizer, [ids], stop)) for ids, stop in zip(produced, self.stops)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _GenerateWith:
    """Hands ``hf_generate_texts`` a model whose ``generate`` also gets our logits processor and each
    row's stop strings, so tokenisation, padding side, decoding and stripping stay those of the
    students' generation."""

    def __init__(self, model: torch.nn.Module, processor: _PerRowDecoding, tokenizer,
                 stops: Sequence[Sequence[str]]):
        self._model = model
        self._processor = processor
        self._tokenizer = tokenizer
        self._stops = stops

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def training(self) -> bool:
        return self._model.training

    def train(self, mode: bool = True):
        self._model.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def generate(self, **kwargs):
        return self._model.generate(**kwargs, logits_processor=LogitsProcessorList([self._processor]),
                                    stopping_criteria=StoppingCriteriaList([_RowStops(self._tokenizer, self._stops)]))


class HFLocalBackend:
    """A transformers model run in this process.

    Config (the ``teacher`` node; the loading fields are those of a student config)::

        backend: hf_local
        model: smollm2-135m-instruct     # display name: ledger, annotations, cache key (default: pretrained)
        arch: causal                     # causal | seq2seq
        source: embedded                 # hub (hub id or local folder) | embedded (a model shipped in a package)
        pretrained: smollm2-135m-instruct-q4_1
        dtype: float32                   # float32 | bfloat16 | float16
        device: auto                     # auto (cuda if available, else cpu) | cpu | cuda | cuda:1 ...
        batch_size: 8                    # requests per generate call
        seed: 0                          # mixed into every sampling seed

    Loading is lazy (``prepare`` or the first ``complete``), so building the backend only checks
    the config. ``cache_dir`` (a constructor argument) is where embedded models are converted; by
    default ``$TAILKD_CACHE_DIR`` or ``~/.cache/tailkd`` as for students.

    Each request's chat messages are rendered with the tokenizer's chat template (generation
    prompt added) when it has one, else their contents are joined by blank lines. A whole batch is
    one ``generate`` call. Decoding parameters per request: ``temperature`` (0, the default, is
    greedy), ``max_tokens`` (the collector always sends one: ``teacher.max_tokens``, else 1024) and
    ``stop`` (a string or list: a row stops decoding once its text is settled at one, as an API stops;
    greedy rows whose stops differ decode to the limit; the text is cut after).
    ``top_p``/``top_k`` are not applied: sampling is from the full tempered distribution.

    Reproducible batched sampling: sampling uses no global RNG. A sampled request's seed is a hash of
    ``seed`` and its content key (``TeacherRequest.cache_key``: messages, parameters and
    ``sample_index``), and its tokens are drawn with the Gumbel-max trick from a generator of its
    own (see :class:`_PerRowDecoding`), so the same request gives the same text in any batch and
    different ``sample_index`` values give independent samples. Reproducible on one kind of device:
    CPU and CUDA generators draw different streams.

    Token counts are the tokenizer's: the prompt as fed to the model (special tokens included) and
    the returned text (without special tokens), at most the request's max_tokens.
    """

    name = "hf_local"
    cacheable = True
    max_concurrency = 1

    def __init__(self, cfg: Mapping[str, Any], *, cache_dir: Path | None = None):
        pretrained = cfg.get("pretrained")
        if cfg.get("source") == "tiny":
            size = cfg.get("size") or {}
            pretrained = (f"tiny-init{int(cfg.get('init_seed', 0))}-v{cfg.get('vocab_size', 512)}-"
                          f"{'-'.join(f'{k}{v}' for k, v in sorted(dict(size).items()))}")
            self._tiny = {k: cfg.get(k) for k in ("vocab_size", "size", "init_seed") if cfg.get(k) is not None}
        if pretrained is None or not str(pretrained).strip():
            raise ConfigError("teacher.pretrained is required for backend hf_local: a hub id, a local folder "
                              "or an embedded model name")
        self.pretrained = str(pretrained)
        self.model: str = str(cfg.get("model") or self.pretrained)
        self.arch = str(cfg.get("arch", "causal"))
        if self.arch not in ARCHS:
            raise ConfigError(f"teacher.arch={self.arch!r} is unknown; choose one of {list(ARCHS)}")
        self.source = str(cfg.get("source", "hub"))
        if self.source not in SOURCES:
            raise ConfigError(f"teacher.source={self.source!r} is unknown; choose one of {list(SOURCES)}")
        if self.source == "embedded" and self.pretrained not in EMBEDDED:
            raise ConfigError(f"teacher.pretrained={self.pretrained!r} is not an embedded model; "
                              f"known: {sorted(EMBEDDED)}")
        self.dtype = str(cfg.get("dtype", "float32"))
        if self.dtype not in DTYPES:
            raise ConfigError(f"teacher.dtype={self.dtype!r} is unknown; choose one of {sorted(DTYPES)}")
        self.device = str(cfg.get("device") or "auto")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as err:
                raise ConfigError(f"teacher.device={self.device!r} is not a torch device ({err})") from err
        try:
            self.batch_size = int(cfg.get("batch_size", 8))
            self.seed = int(cfg.get("seed", 0))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"teacher.batch_size and teacher.seed must be integers ({err})") from err
        if self.batch_size < 1:
            raise ConfigError(f"teacher.batch_size must be at least 1 (got {self.batch_size})")
        # the cache key names everything that changes an answer: the weights (a new checkpoint under the
        # same display name is another teacher), their precision, the sampling seed, and the kind of
        # device (CPU and CUDA draw different random streams)
        device_kind = torch.device(self._resolved_device()).type
        self.identity = (f"{self.model}@{self.source}:{self.pretrained}|dtype={self.dtype}|seed={self.seed}"
                         f"|device={device_kind}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._student: Student | None = None
        self._generated = (0, 0, 0.0)  # answers, generated tokens, seconds: the throughput the log states
        self._texts: list[str] = []  # a tiny teacher's tokenizer is trained on the task's texts
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------------

    @property
    def student(self) -> Student:
        """The loaded model and tokenizer (loads them on first use)."""
        if self._student is None:
            with self._lock:
                if self._student is None:
                    self._student = self._load()
        return self._student

    def _load(self) -> Student:
        if self.source == "hub" and _looks_like_path(self.pretrained) and not Path(self.pretrained).expanduser().is_dir():
            raise ConfigError(f"teacher.pretrained={self.pretrained!r}: no such folder")
        location = str(Path(self.pretrained).expanduser()) if _looks_like_path(self.pretrained) else self.pretrained
        cfg = {"name": self.model, "arch": self.arch, "source": self.source, "pretrained": location,
               "dtype": self.dtype, "lora": {"enabled": False}, **getattr(self, "_tiny", {})}
        log.info("Loading teacher %s (%s) from %s", self.model, self.source, location)
        try:
            student = load_student(cfg, self.cache_dir or _default_cache_dir(), self._texts)
        except (ConfigError, OSError, ValueError) as err:
            # load_student words its errors for students; say which teacher and which setting instead
            cause = err.__cause__ if isinstance(err, ConfigError) and err.__cause__ is not None else err
            hint = ("" if self.source == "embedded" else
                    " Offline? Set teacher.pretrained to a local folder holding the model, or use"
                    " source: embedded with pretrained: smollm2-135m-instruct-q4_1.")
            raise ConfigError(f"cannot load teacher {self.model!r} from {location!r}: {cause}{hint}") from err
        device = self._resolved_device()
        try:
            student.model.to(device)
        except (RuntimeError, AssertionError) as err:  # AssertionError: torch built without CUDA
            raise ConfigError(f"teacher.device={device!r} is not usable here ({err})") from err
        student.model.eval()
        return student

    def _resolved_device(self) -> str:
        return ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device

    def use_adapter(self, model: torch.nn.Module, fingerprint: str) -> None:
        """Generate with ``model`` (the teacher with a trained adapter) from now on; the cache identity
        names the adapter, so its answers never pass for the base teacher's. The adapter stays unmerged
        (a merge into bf16 weights rounds most of a short training away) and is served in place
        (:func:`tailkd.models.lora.serve_in_place`): save it before."""
        model.eval()
        self.student.model = serve_in_place(model)
        self.identity = f"{self.identity.split('|adapter=')[0]}|adapter={fingerprint}"

    def prepare(self, task: Any, examples: Sequence[Any]) -> None:
        if self._student is None and self.source == "tiny" and task is not None:
            self._texts = [task.prompt(e) + task.target(e.rationale, e.answer) for e in examples]
            digest = hashlib.sha256("\n".join(self._texts).encode()).hexdigest()[:12]
            self.identity += f"|tokenizer={digest}"  # its vocabulary comes from these texts
        self.student  # noqa: B018 -- loads the model now rather than inside the first batch

    # -- prompts ---------------------------------------------------------------------------------

    def render_prompt(self, request: TeacherRequest) -> str:
        """The text fed to the model for ``request``."""
        tokenizer = self.student.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            return request.prompt
        text = tokenizer.apply_chat_template(request.chat(), add_generation_prompt=True, tokenize=False)
        # templates that write the BOS token themselves would get a second one from the tokenizer
        bos = tokenizer.bos_token
        if bos and text.startswith(bos) and _tokenizer_adds_bos(tokenizer):
            text = text[len(bos):]
        return text

    def bound(self, request: TeacherRequest) -> Bound | None:
        """The prompt's exact token count as fed to the model (a chat template adds its own tokens, a
        system prompt among them), and at most its ``max_tokens`` out."""
        try:
            row, _ = self._decoding(request)
            return Bound(self.count_tokens(self.render_prompt(request), special=True), row.max_new_tokens)
        except Exception:  # not runnable: complete() reports it, nothing is charged
            return None

    def count_tokens(self, text: str, *, special: bool) -> int:
        return len(self.student.tokenizer(text, add_special_tokens=special)["input_ids"])

    # -- completion ------------------------------------------------------------------------------

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        student = self.student  # a loading failure is a config problem: it raises
        results: list[Completion | TeacherCallError | None] = [None] * len(requests)
        todo: list[tuple[int, str, _Row, list[str]]] = []
        for i, request in enumerate(requests):
            try:
                row, stop = self._decoding(request)
                prompt = self.render_prompt(request)
            except Exception as err:  # a bad parameter or a template refusing the messages
                results[i] = TeacherCallError(
                    f"hf_local {self.model}: request for {request.example_id!r} not runnable: {err}",
                    retryable=False)
                continue
            todo.append((i, prompt, row, stop))
        if todo:
            started = time.perf_counter()
            try:
                texts = self._generate(student, [prompt for _, prompt, _, _ in todo], [row for _, _, row, _ in todo],
                                       [stop for _, _, _, stop in todo])
            except Exception as err:  # reported per request: the collector decides
                log.warning("hf_local %s: generation failed for a batch of %d: %s", self.model, len(todo), err)
                for i, _, _, _ in todo:
                    results[i] = TeacherCallError(
                        f"hf_local {self.model}: generation failed for {requests[i].example_id!r}: "
                        f"{type(err).__name__}: {err}", retryable=False)
            else:
                for (i, prompt, row, stop), text in zip(todo, texts):
                    text = cut_at_stop(text, stop).strip() if stop else text
                    meta: dict[str, Any] = {"temperature": row.temperature}
                    if row.seed is not None:
                        meta["seed"] = row.seed
                    results[i] = Completion(
                        text=text,
                        input_tokens=self.count_tokens(prompt, special=True),
                        # re-tokenising decoded text can count more tokens than were generated (a byte-level
                        # BPE does not round-trip arbitrary ids): never more than the limit sent
                        output_tokens=min(self.count_tokens(text, special=False), row.max_new_tokens),
                        model=self.model,
                        meta=meta,
                    )
                self._log_throughput([results[i] for i, _, _, _ in todo], time.perf_counter() - started)
        return results  # type: ignore[return-value]

    def _log_throughput(self, done: Sequence[Completion], seconds: float) -> None:
        """A batch's and the run's generation speed, in the log: what a study pays in compute."""
        tokens = sum(c.output_tokens for c in done)
        answers, total, elapsed = self._generated
        self._generated = answers, total, elapsed = answers + len(done), total + tokens, elapsed + seconds
        log.info("hf_local %s: %d answers, %d tokens in %.1f s (%.1f tokens/s; so far %d answers at %.1f tokens/s)",
                 self.model, len(done), tokens, seconds, tokens / max(seconds, 1e-9), answers, total / max(elapsed, 1e-9))

    def _decoding(self, request: TeacherRequest) -> tuple[_Row, list[str]]:
        temperature = float(request.param("temperature", 0.0) or 0.0)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (got {temperature})")
        max_tokens = request.param("max_tokens", 256)
        max_new_tokens = int(max_tokens if max_tokens is not None else 256)
        if max_new_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1 (got {max_new_tokens})")
        stop = request.param("stop") or []
        stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        seed = sample_seed(request.cache_key(self.name, self.model), self.seed) if temperature > 0 else None
        return _Row(temperature, max_new_tokens, seed), stop

    def _generate(self, student: Student, prompts: list[str], rows: list[_Row], stops: list[list[str]]) -> list[str]:
        max_new_tokens = max(row.max_new_tokens for row in rows)
        needs_processor = any(row.seed is not None or row.max_new_tokens < max_new_tokens for row in rows)
        if not needs_processor:
            # the stop sequences end each row's decoding where its text will be cut (a few-shot teacher's
            # invented next question), as an API stops there: the continuation costs no compute. Rows that
            # differ in them decode to the limit and are cut after
            shared = stops[0] if all(stop == stops[0] for stop in stops) else ()
            return generate_texts(student, prompts, max_new_tokens, do_sample=False, stop=tuple(shared))
        # per-row seeds and limits are a logits processor, which only transformers' generate takes
        processor = _PerRowDecoding(rows, student.tokenizer.eos_token_id)
        wrapped = Student(_GenerateWith(student.model, processor, student.tokenizer, stops), student.tokenizer,
                          student.arch, student.name)
        return hf_generate_texts(wrapped, prompts, max_new_tokens, do_sample=False)


def _looks_like_path(location: str) -> bool:
    """A folder rather than a hub id (relative folders without ./ are left to transformers)."""
    return location.startswith(("/", "~", "."))


def _tokenizer_adds_bos(tokenizer: Any) -> bool:
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
