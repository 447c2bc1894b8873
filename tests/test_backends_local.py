"""Teacher backends that need no network: a local transformers model, and replayed answers."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tailkd.errors import ConfigError, DataError
from tailkd.tasks import Example
from tailkd.teachers.annotation import Annotation, approx_tokens
from tailkd.teachers.backends.hf_local import HFLocalBackend
from tailkd.teachers.backends.protocol import Completion, TeacherCallError, TeacherRequest
from tailkd.teachers.backends.recorded import RecordedBackend

from helpers import allocated_bytes, tiny_student, trained_lora

QUESTIONS = ["What is 1 + 2?", "What is 12 + 7 - 3?", "What is 40 - 11 + 2 + 5 + 9?", "What is 5?"]


def request(question: str, sample_index: int = 0, example_id: str | None = None, **params) -> TeacherRequest:
    params.setdefault("max_tokens", 10)
    return TeacherRequest(
        example_id=example_id or question,
        messages=(("system", "Answer step by step."), ("user", f"Question: {question}")),
        params=tuple(sorted(params.items())),
        sample_index=sample_index,
    )


def texts(results) -> list[str]:
    assert all(isinstance(r, Completion) for r in results), results
    return [r.text for r in results]


# -- hf_local ------------------------------------------------------------------------------------


def saved_teacher(folder, arch: str = "causal"):
    """A tiny random model saved as a transformers folder. Its weights are drawn wider than the default
    init so that greedy outputs differ between prompts (at std 0.02 every prompt decodes to the same
    repeated token, which would make the batch comparisons vacuous)."""
    student = tiny_student(arch, init_seed=4)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in student.model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    student.model.save_pretrained(folder)
    student.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_teacher(tmp_path_factory.mktemp("teacher"))


def hf_cfg(folder, **overrides) -> dict:
    cfg = {"backend": "hf_local", "model": "tiny-teacher", "arch": "causal", "source": "hub",
           "pretrained": str(folder), "dtype": "float32", "device": "cpu", "batch_size": 8}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def backend(model_dir):
    backend = HFLocalBackend(hf_cfg(model_dir))
    backend.prepare(None, [])
    return backend


def test_hf_local_protocol_attributes(model_dir):
    backend = HFLocalBackend(hf_cfg(model_dir, batch_size=3))
    assert (backend.name, backend.model, backend.cacheable, backend.max_concurrency, backend.batch_size) == (
        "hf_local", "tiny-teacher", True, 1, 3)
    assert HFLocalBackend({"pretrained": str(model_dir)}).batch_size == 8
    assert HFLocalBackend({"pretrained": str(model_dir)}).model == str(model_dir)


def test_greedy_batch_equals_one_at_a_time(backend):
    requests = [request(q) for q in QUESTIONS]
    batched = texts(backend.complete(requests))
    single = [texts(backend.complete([r]))[0] for r in requests]
    assert batched == single
    assert len(set(batched)) > 1, "the test model should not answer every prompt alike"
    assert texts(backend.complete(list(reversed(requests)))) == list(reversed(batched))


def test_token_counts_are_the_tokenizers(backend):
    tokenizer = backend.student.tokenizer
    requests = [request(q) for q in QUESTIONS]
    for req, result in zip(requests, backend.complete(requests)):
        prompt = backend.render_prompt(req)
        assert prompt == req.prompt  # the tiny tokenizer has no chat template: contents joined
        assert result.input_tokens == len(tokenizer(prompt)["input_ids"]) > 0
        # the text re-tokenised, but never more than the tokens the request allowed (and generated)
        limit = req.param("max_tokens", 256)
        assert result.output_tokens == min(len(tokenizer(result.text, add_special_tokens=False)["input_ids"]), limit) > 0
        assert result.model == "tiny-teacher"


def test_per_request_max_tokens_in_one_batch(backend):
    short, long = request(QUESTIONS[1], max_tokens=3), request(QUESTIONS[2], max_tokens=10)
    mixed = texts(backend.complete([short, long]))
    assert mixed == [texts(backend.complete([short]))[0], texts(backend.complete([long]))[0]]
    unlimited = texts(backend.complete([request(QUESTIONS[1], max_tokens=10)]))[0]
    assert unlimited.startswith(mixed[0]) and len(unlimited) > len(mixed[0])


def test_sampling_is_reproducible_per_request_whatever_the_batch(backend):
    requests = [request(q, i, temperature=1.0) for q in QUESTIONS[:3] for i in range(4)]
    results = backend.complete(requests)
    first = texts(results)
    again = texts(backend.complete(list(reversed(requests))))
    assert first == list(reversed(again))
    assert [texts(backend.complete([r]))[0] for r in requests[:4]] == first[:4]
    # with a greedy neighbour in the batch too
    mixed = texts(backend.complete([request(QUESTIONS[3]), requests[5]]))
    assert mixed[1] == first[5]
    for q in range(3):
        assert len(set(first[4 * q: 4 * q + 4])) > 1, "sample indices should give different samples"
    seeds = [r.meta["seed"] for r in results]
    assert len(set(seeds)) == len(seeds)


def test_sampling_seed_setting_changes_samples(model_dir, backend):
    other = HFLocalBackend(hf_cfg(model_dir, seed=1))
    other._student = backend.student  # same weights, no second load
    requests = [request(q, 0, temperature=1.0) for q in QUESTIONS]
    assert texts(other.complete(requests)) != texts(backend.complete(requests))


def test_greedy_ignores_global_rng_and_sample_index(backend):
    torch.manual_seed(0)
    a = texts(backend.complete([request(QUESTIONS[0], 0), request(QUESTIONS[0], 2)]))
    torch.manual_seed(1)
    b = texts(backend.complete([request(QUESTIONS[0], 1)]))
    assert a[0] == a[1] == b[0]


def test_bad_parameters_fail_only_their_request(backend):
    results = backend.complete([request(QUESTIONS[0], temperature=-1.0), request(QUESTIONS[1]),
                                request(QUESTIONS[2], max_tokens=0)])
    assert isinstance(results[0], TeacherCallError) and not results[0].retryable
    assert isinstance(results[1], Completion)
    assert isinstance(results[2], TeacherCallError) and not results[2].retryable


def test_generation_error_is_returned_for_each_request(backend, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr("tailkd.teachers.backends.hf_local.generate_texts", broken)
    results = backend.complete([request(q) for q in QUESTIONS[:2]])
    assert len(results) == 2
    for result in results:
        assert isinstance(result, TeacherCallError) and not result.retryable
        assert "out of memory" in str(result)
    assert backend.complete([]) == []


def test_chat_template_is_used_when_the_tokenizer_has_one(model_dir, backend):
    templated = HFLocalBackend(hf_cfg(model_dir))
    templated.prepare(None, [])
    tokenizer = templated.student.tokenizer
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    req = request(QUESTIONS[1])
    prompt = templated.render_prompt(req)
    assert prompt == f"[system] Answer step by step.\n[user] Question: {QUESTIONS[1]}\n[assistant]"
    [result] = templated.complete([req])
    assert result.input_tokens == len(tokenizer(prompt)["input_ids"])


def test_loading_is_lazy_and_a_missing_model_is_a_config_error(tmp_path):
    backend = HFLocalBackend(hf_cfg(tmp_path / "no-such-model"))  # building does not load
    assert backend._student is None
    with pytest.raises(ConfigError, match="no-such-model"):
        backend.prepare(None, [])
    with pytest.raises(ConfigError, match="no-such-model"):
        backend.complete([request(QUESTIONS[0])])


@pytest.mark.parametrize("overrides, message", [
    ({"pretrained": None}, "pretrained"),
    ({"arch": "encoder"}, "arch"),
    ({"source": "magic"}, "source"),
    ({"dtype": "int8"}, "dtype"),
    ({"batch_size": 0}, "batch_size"),
    ({"source": "embedded", "pretrained": "no-such-embedded"}, "embedded"),
])
def test_bad_config_fails_at_construction(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        HFLocalBackend(hf_cfg(tmp_path, **overrides))


# -- recorded ------------------------------------------------------------------------------------


def write_jsonl(path, rows) -> None:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")


def annotation(example_id: str, text: str, cost: float = 0.002) -> dict:
    return Annotation(
        example_id=example_id, prompt=f"Question: {example_id}?", text=text, rationale=None, answer=None,
        input_tokens=21, output_tokens=13, cost_usd=cost, backend="openai", model="gpt-4o-2024-08-06",
    ).to_dict()


EXAMPLES = [Example(id="q1", question="What is 1 + 2?", answer="3"),
            Example(id="q2", question="What is  12 + 7 - 3?", answer="16"),
            Example(id="q3", question="What is 5?", answer="5")]


def test_recorded_replays_annotations_jsonl(tmp_path):
    path = tmp_path / "annotations.jsonl"
    write_jsonl(path, [annotation("q1", "1 + 2 = 3. The answer is 3."), "",
                       annotation("q2", "12 + 7 = 19. 19 - 3 = 16. The answer is 16.", cost=0.004)])
    backend = RecordedBackend({"backend": "recorded", "path": str(path)})
    assert (backend.name, backend.cacheable, backend.max_concurrency) == ("recorded", False, 1)
    assert backend.batch_size >= 1024
    assert backend.model == "gpt-4o-2024-08-06"  # the rows agree on it
    backend.prepare(None, EXAMPLES)
    first, second = backend.complete([request("ignored", example_id="q1"), request("ignored", example_id="q2")])
    assert first.text == "1 + 2 = 3. The answer is 3."
    assert (first.input_tokens, first.output_tokens, first.model) == (21, 13, "gpt-4o-2024-08-06")
    assert first.meta["recorded_cost_usd"] == pytest.approx(0.002)
    assert first.meta["recorded_from"] == f"{path}:1"
    assert second.meta["recorded_cost_usd"] == pytest.approx(0.004)
    assert second.meta["recorded_from"] == f"{path}:3"


def test_recorded_minimal_rows_by_id_and_by_question(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [{"question": "What is 1 + 2?", "text": "by question"},
                       {"example_id": "q1", "text": "by id"},
                       {"question": "What is 12 + 7 - 3?\n", "text": "whitespace does not matter"},
                       {"example_id": 7, "text": "integer id"}])
    backend = RecordedBackend({"path": str(path), "model": "my-teacher"})
    assert backend.model == "my-teacher"
    backend.prepare(None, EXAMPLES)
    results = backend.complete([request("x", example_id="q1"), request("x", example_id="q2"),
                                request("x", example_id="7")])
    assert texts(results) == ["by id", "whitespace does not matter", "integer id"]  # id first, then question
    assert results[1].model == "my-teacher" and "recorded_cost_usd" not in results[1].meta
    assert results[1].output_tokens == approx_tokens("whitespace does not matter")
    assert results[1].input_tokens == approx_tokens(request("x").prompt)


def test_recorded_samples_in_file_order(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, [{"question": "What is 5?", "text": f"sample {i}"} for i in range(3)])
    backend = RecordedBackend({"path": path})
    assert backend.model == "recorded"
    backend.prepare(None, EXAMPLES)
    assert texts(backend.complete([request("x", i, example_id="q3") for i in range(3)])) == [
        "sample 0", "sample 1", "sample 2"]
    [missing] = backend.complete([request("x", 3, example_id="q3")])
    assert isinstance(missing, TeacherCallError) and not missing.retryable
    assert "'q3'" in str(missing) and str(path) in str(missing)


def test_recorded_missing_question_is_a_non_retryable_error(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [{"example_id": "q1", "text": "3"}])
    backend = RecordedBackend({"path": str(path)})
    backend.prepare(None, EXAMPLES)
    found, missing = backend.complete([request("x", example_id="q1"), request("x", example_id="q2")])
    assert found.text == "3"
    assert isinstance(missing, TeacherCallError) and not missing.retryable
    assert "'q2'" in str(missing) and str(path) in str(missing)


@pytest.mark.parametrize("lines, line", [
    (['{"example_id": "q1", "text": "a"}', '{"example_id": "q2", "text": '], 2),
    (['{"example_id": "q1", "text": "a"}', "", '{"example_id": "q2"}'], 3),
    (['{"text": "an answer to what?"}'], 1),
    (['["q1", "a"]'], 1),
    (['{"example_id": "q1", "text": null}'], 1),
    (['{"example_id": "q1", "text": "a", "output_tokens": -3}'], 1),
    (['{"example_id": "q1", "text": "a", "cost_usd": "free"}'], 1),
])
def test_recorded_malformed_file_names_file_and_line(tmp_path, lines, line):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, lines)
    with pytest.raises(DataError, match=rf"bad\.jsonl line {line}\b"):
        RecordedBackend({"path": str(path)})


def test_recorded_missing_or_empty_file(tmp_path):
    with pytest.raises(DataError, match="nowhere.jsonl"):
        RecordedBackend({"path": str(tmp_path / "nowhere.jsonl")})
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        RecordedBackend({"path": str(tmp_path / "empty.jsonl")})
    with pytest.raises(ConfigError, match="path"):
        RecordedBackend({"backend": "recorded"})


def test_a_requests_stop_sequences_end_its_decoding_and_the_log_states_the_throughput(backend, caplog):
    """A live teacher stops where its text would be cut (its invented next question), as an API does:
    the continuation is never computed. The cut text is the same as decoding on and cutting after."""
    free = request(QUESTIONS[2], max_tokens=10)
    whole = texts(backend.complete([free]))[0]
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]  # what the teacher writes half-way
    steps = []
    hook = backend.student.model.register_forward_pre_hook(lambda m, a, kw: steps.append(1), with_kwargs=True)
    try:
        with caplog.at_level("INFO", logger="tailkd.teachers.backends.hf_local"):
            stopped = backend.complete([request(QUESTIONS[2], max_tokens=10, stop=[stop])])
    finally:
        hook.remove()
    assert texts(stopped)[0] == whole[:whole.index(stop)].strip()
    assert len(steps) < 10  # the prompt, then fewer steps than the limit
    assert "tokens/s" in caplog.text and "hf_local tiny-teacher: 1 answers" in caplog.text


@pytest.fixture(scope="module")
def seq2seq_backend(tmp_path_factory):
    folder = saved_teacher(tmp_path_factory.mktemp("seq2seq-teacher"), "seq2seq")
    backend = HFLocalBackend(hf_cfg(folder, arch="seq2seq"))
    backend.prepare(None, [])
    return backend


@pytest.mark.parametrize("arch", ["causal", "seq2seq"])
def test_a_sampled_requests_stop_sequences_end_its_decoding_too(arch, backend, seq2seq_backend):
    """Sampled rows go through transformers' generate (their seeds are a logits processor), which knows
    nothing of our stops: a few-shot teacher's sampled answer then paid for its invented next question up
    to max_tokens. Each row stops at its own stop strings; the sample and its cut are unchanged."""
    backend = backend if arch == "causal" else seq2seq_backend
    free = [request(q, temperature=1.0, max_tokens=12) for q in QUESTIONS[1:3]]
    whole = texts(backend.complete(free))
    stops = [w[len(w) // 3:len(w) // 3 + 2] for w in whole]  # what each row writes a third of the way in
    steps = []
    hook = backend.student.model.register_forward_pre_hook(lambda m, a, kw: steps.append(1), with_kwargs=True)
    try:
        stopped = backend.complete([request(q, temperature=1.0, max_tokens=12, stop=[s])
                                    for q, s in zip(QUESTIONS[1:3], stops)])
    finally:
        hook.remove()
    assert texts(stopped) == [w[:w.index(s)].strip() for w, s in zip(whole, stops)]
    assert len(steps) < 12  # the prompt, then fewer steps than the limit


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_trained_adapter_answers_as_peft_computes_it_in_the_base_models_memory(model_dir, dtype):
    """ARTE's aligned teacher keeps its adapter unmerged (a merge into bf16 rounds a few DPO steps away).
    PEFT's forward allocates several activation-sized tensors per adapted layer (the live 1.5B teacher:
    1.37x the base model's time, bench/adapter_serving.py); use_adapter serves the same update in place."""
    teacher = HFLocalBackend(hf_cfg(model_dir, dtype=dtype))
    teacher.prepare(None, [])
    ids = torch.randint(0, 200, (4, 48), generator=torch.Generator().manual_seed(0))
    base_bytes, base_logits = allocated_bytes(lambda: teacher.student.model(input_ids=ids).logits)
    policy = trained_lora(teacher.student.model)
    peft_bytes, peft_logits = allocated_bytes(lambda: policy(input_ids=ids).logits)
    with torch.no_grad():
        exact = copy.deepcopy(policy).float()(input_ids=ids).logits  # float32 throughout
    teacher.student.model = policy
    peft_texts = texts(teacher.complete([request(q, max_tokens=8) for q in QUESTIONS]))

    teacher.use_adapter(policy, "trained")
    served_bytes, served_logits = allocated_bytes(lambda: teacher.student.model(input_ids=ids).logits)
    assert (peft_logits - base_logits).abs().max() > 0.1  # the adapter changes what the teacher says
    # as close to the float32 result as PEFT's own forward in the teacher's dtype
    assert (served_logits.float() - exact).norm() <= 1.5 * (peft_logits.float() - exact).norm() + 1e-5 * exact.norm()
    if dtype == "float32":
        assert texts(teacher.complete([request(q, max_tokens=8) for q in QUESTIONS])) == peft_texts
    assert peft_bytes > 1.5 * base_bytes
    assert served_bytes < 1.1 * base_bytes
