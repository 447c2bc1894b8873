"""The students' generation for the signals (``decode_causal``): greedy texts as transformers' ``generate``
gives them, samples from the distribution it samples, each prompt computed once for its k samples, and
rows leaving the batch once their text is settled."""

import pytest
import torch

from tailkd.models.generation import (
    NextTokens,
    decode_causal,
    generate_texts,
    hf_generate_texts,
    settled_by_stop,
)
from tailkd.signals.self_consistency import sample_texts

from helpers import allocated_bytes, tiny_student

PROMPTS = ["Question: What is 1 + 2?\nAnswer:", "Q: 12 + 7 - 3?", "Question: What is 40 - 11 + 2 + 5 + 6?\nAnswer:", "7"]


def lively_student(lora: bool = False):
    """The tiny student with its weights drawn wider: as initialised it repeats the prompt's last token
    whatever came before, which would hide a row decoded from another row's cache."""
    student = tiny_student(lora=lora)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in student.model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    student.model.eval()
    return student


class Forwards:
    """The (rows, tokens) of each forward pass of ``model``."""

    def __init__(self, model: torch.nn.Module):
        self.shapes: list[tuple[int, int]] = []
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))


@pytest.mark.parametrize("stop", [(), ("\n",), ("is", "Q")])
def test_greedy_texts_are_generates_on_prompts_of_different_lengths(stop):
    student = lively_student()
    expected = hf_generate_texts(student, PROMPTS, 16, stop=stop)
    assert len(set(expected)) == len(PROMPTS)  # every row its own text: a row read from another would show
    assert generate_texts(student, PROMPTS, 16, stop=stop) == expected


def test_greedy_texts_of_a_lora_student_are_generates():
    student = lively_student(lora=True)
    assert generate_texts(student, PROMPTS, 12) == hf_generate_texts(student, PROMPTS, 12)
    assert generate_texts(student, SHARED, 12) == hf_generate_texts(student, SHARED, 12)  # a shared prefix too


def test_each_prompt_is_computed_once_for_its_k_samples():
    student = lively_student()
    forwards = Forwards(student.model)
    texts = generate_texts(student, PROMPTS, 6, do_sample=True, temperature=1.0, num_return_sequences=4)
    assert len(texts) == 4 * len(PROMPTS)
    prompt_tokens = len(student.tokenizer(PROMPTS, padding=True)["input_ids"][0])
    assert forwards.shapes[0] == (len(PROMPTS), prompt_tokens)  # generate computes each prompt k times
    assert all(tokens == 1 for _, tokens in forwards.shapes[1:])


FEW_SHOT = ("Answer the question. Reason briefly, then end with the answer.\n\nQ: What is 2 + 2?\nA: 2 + 2 = 4. "
            "So the answer is 4.\n\nQ: ")
SHARED = [FEW_SHOT + q for q in ("What is 1 + 2?\nA:", "What is 40 - 11 + 2 + 5 + 6?\nA:", "7 - 3?\nA:")]


def test_a_prefix_every_prompt_shares_is_computed_once_and_the_texts_stay_generates():
    """A few-shot teacher's exemplars are most of each prompt: computed once, copied to every row, and
    each row's text is still the one generate gives it alone (suffixes of different lengths)."""
    student = lively_student()
    expected = hf_generate_texts(student, SHARED, 16)
    assert len(set(expected)) == len(SHARED)
    forwards = Forwards(student.model)
    assert generate_texts(student, SHARED, 16) == expected
    ids = student.tokenizer(SHARED)["input_ids"]
    prefix = next(i for i in range(min(map(len, ids))) if len({row[i] for row in ids}) > 1)
    assert prefix >= 16
    assert forwards.shapes[0] == (1, prefix)
    assert forwards.shapes[1] == (len(SHARED), max(map(len, ids)) - prefix)


def test_sharing_the_prefix_changes_no_sample():
    student = lively_student()
    drawn = []
    for share in (True, False):
        torch.manual_seed(3)
        drawn.append(decode_causal(student, SHARED, 8, k=3, temperature=1.0, and_greedy=True, share_prefix=share))
    assert drawn[0] == drawn[1]


def test_prompts_that_are_all_prefix_keep_a_token_each():
    """Identical prompts (or one the start of another) share all but their last token."""
    student = lively_student()
    prompts = [SHARED[0], SHARED[0], SHARED[0] + " 3"]
    assert generate_texts(student, prompts, 8) == hf_generate_texts(student, prompts, 8)


def test_draws_follow_softmax_at_the_temperature_and_never_pick_an_impossible_token():
    logits = torch.tensor([0.0, float("-inf"), 1.0, -2.0]).repeat(40000, 1)
    torch.manual_seed(0)
    for temperature in (1.0, 0.5):
        probs = torch.softmax(logits[0] / temperature, dim=-1)
        drawn = NextTokens(temperature)(logits.bfloat16())  # bf16 logits, as autocast's LM head gives them
        share = torch.bincount(drawn, minlength=4).double() / len(logits)
        sigma = (probs * (1 - probs) / len(logits)).sqrt()
        assert share[1] == 0 and ((share - probs).abs() <= 4.5 * sigma).all()
    assert NextTokens(0.0)(logits[:2]).tolist() == [2, 2]


def test_sampled_tokens_follow_the_models_probabilities():
    student = lively_student()
    prompt, temperature, draws = PROMPTS[0], 0.7, 4000
    with torch.no_grad():
        logits = student.model(**student.tokenizer([prompt], return_tensors="pt")).logits[0, -1]
    probs = torch.softmax(logits / temperature, dim=-1)
    torch.manual_seed(0)
    first = torch.tensor([row[0] for row in decode_causal(student, [prompt], 1, k=draws, temperature=temperature)])
    counts = torch.bincount(first, minlength=len(probs)).double() / draws
    top = probs.topk(8).indices
    sigma = (probs[top] * (1 - probs[top]) / draws).sqrt()
    assert ((counts[top] - probs[top]).abs() < 4.5 * sigma).all()


@pytest.mark.parametrize("ends", ["eos", "stop"])
def test_rows_leave_the_batch_once_ended_and_the_others_read_the_same(ends):
    student = lively_student()
    expected_ids = decode_causal(student, PROMPTS, 12)
    stop: tuple[str, ...] = ()
    if ends == "eos":  # the token row 0 writes third ends it, as EOS
        student.tokenizer.eos_token = student.tokenizer.convert_ids_to_tokens(expected_ids[0][2])
    else:  # what row 0 writes first, as a stop string
        stop = (student.tokenizer.decode(expected_ids[0][:2]),)
    expected = hf_generate_texts(student, PROMPTS, 12, stop=stop)
    forwards = Forwards(student.model)
    assert generate_texts(student, PROMPTS, 12, stop=stop) == expected
    rows = [n for n, _ in forwards.shapes]
    assert rows[0] == len(PROMPTS) and min(rows) < len(PROMPTS)  # generate keeps every row to the end


def test_a_stop_string_settles_the_text_once_no_stop_begun_before_it_could_complete():
    assert not settled_by_stop("xab", ["b", "abc"])  # "abc" may yet complete, at 1: the cut would move
    assert settled_by_stop("xabd", ["b", "abc"])
    assert settled_by_stop("Q: 1", ["Q:"]) and not settled_by_stop("Q 1", ["Q:"])
    assert settled_by_stop("5.\n\n", ["\nQuestion:", "\n\n"])  # no "\nQuestion:" can hold "\n\n"


def test_sampling_near_temperature_zero_is_greedy_and_in_the_order_given():
    student = lively_student()
    greedy = generate_texts(student, PROMPTS, 8)
    samples = sample_texts(student, PROMPTS, 8, k=2, temperature=1e-6, batch_size=2)
    assert samples == [[text, text] for text in greedy]


def test_a_greedy_row_beside_the_samples_decodes_greedily_and_leaves_the_samples_as_drawn():
    student = lively_student()
    torch.manual_seed(3)
    samples = decode_causal(student, PROMPTS, 10, k=3, temperature=1.0)
    torch.manual_seed(3)
    both = decode_causal(student, PROMPTS, 10, k=3, temperature=1.0, and_greedy=True)
    greedy = decode_causal(student, PROMPTS, 10)
    assert [row for i, row in enumerate(both) if i % 4 != 3] == samples
    assert [row for i, row in enumerate(both) if i % 4 == 3] == greedy
    assert len({tuple(row) for row in samples}) > len(PROMPTS)  # samples that differ from one another


def test_texts_with_their_greedy_output_come_last_in_each_prompts_list():
    student = lively_student()
    texts = sample_texts(student, PROMPTS, 8, k=2, temperature=1.0, batch_size=3, and_greedy=True)
    assert [t[-1] for t in texts] == generate_texts(student, PROMPTS, 8)
    assert all(len(t) == 3 for t in texts)


def test_a_frozen_models_prompt_pass_does_not_copy_its_output_layer_per_row():
    """The prompt pass keeps the last position's logits (logits_to_keep): a strided (rows, 1, hidden) slice.
    torch's matmul folds it into one matrix product only if the output layer's weight requires grad; for a
    frozen model (PEFT's base, a LoRA student, the aligned teacher) it took a batched product over the
    weight expanded per row, which in bfloat16 copies it once per row (16 x 151936 x 1536 for the 1.5B
    teacher: 7.5 GB and 23 s a batch on a CPU; in float32, 5x the time and no copy)."""
    student = tiny_student(init_seed=1)
    student.model.to(torch.bfloat16)
    prompts = [f"Question: what is {i} + {i}?" for i in range(16)]
    bytes_trainable, trainable = allocated_bytes(lambda: generate_texts(student, prompts, 1))
    student.model.requires_grad_(False)
    bytes_frozen, frozen = allocated_bytes(lambda: generate_texts(student, prompts, 1))
    weight = student.model.get_output_embeddings().weight
    assert frozen == trainable
    assert bytes_frozen < bytes_trainable + weight.numel() * weight.element_size()  # not one copy more, let alone 16
