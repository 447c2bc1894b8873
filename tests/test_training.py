"""The Lightning module and data module: tokenisation, weighted training, accumulation, generation."""

import math
from contextlib import nullcontext

import pytest
import pytorch_lightning as pl
import torch

from tailkd.models import generate_texts
from tailkd.training import DistillDataModule, DistillModule, Encoder, TrainRecord
from tailkd.training.loss import IGNORE_INDEX, per_example_token_loss, weighted_mean

from helpers import chain_task, records, tiny_student


class _SGDModule(DistillModule):
    """Plain SGD: the parameter change is then exactly -lr x gradient, so gradients can be compared."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.5)


def _train_one_step(batch_size, accumulate, weights):
    student = tiny_student()
    task = chain_task()
    encoder = Encoder(student.tokenizer, True, 128)
    datamodule = DistillDataModule(records(8, weights), [], encoder, batch_size, 4, seed=0)
    module = _SGDModule(student, task, lr=0.5)
    trainer = pl.Trainer(
        max_steps=1, accumulate_grad_batches=accumulate, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(module, datamodule=datamodule)
    return {k: v.detach().clone() for k, v in student.model.state_dict().items()}


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_gradient_accumulation_does_not_change_the_update():
    weights = [0.2, 1.0, 3.0, 0.5, 1.5, 0.0, 2.0, 1.0]
    full = _train_one_step(batch_size=8, accumulate=1, weights=weights)
    accumulated = _train_one_step(batch_size=4, accumulate=2, weights=weights)
    micro = _train_one_step(batch_size=2, accumulate=4, weights=weights)
    initial = {k: v.detach().clone() for k, v in tiny_student().model.state_dict().items()}
    assert _max_diff(full, initial) > 1e-3  # the step moved the weights
    assert _max_diff(full, accumulated) < 1e-6
    assert _max_diff(full, micro) < 1e-6


def test_weights_change_the_update():
    uniform = _train_one_step(8, 1, [1.0] * 8)
    weighted = _train_one_step(8, 1, [0.2, 1.0, 3.0, 0.5, 1.5, 0.0, 2.0, 1.0])
    assert _max_diff(uniform, weighted) > 1e-4


def test_datamodule_normalises_weights_to_mean_one():
    student = tiny_student()
    dm = DistillDataModule(records(4, [1, 2, 3, 6]), [], Encoder(student.tokenizer, True, 128), 2, 2)
    assert [r.weight for r in dm.records] == pytest.approx([1 / 3, 2 / 3, 1.0, 2.0])


def test_causal_encoding_masks_the_prompt_and_ends_with_eos():
    student = tiny_student()
    encoder = Encoder(student.tokenizer, True, 128)
    ids, labels = encoder.encode("Question: What is 1 + 2?\nAnswer:", " 1 + 2 = 3. The answer is 3.")
    prompt_len = len(student.tokenizer("Question: What is 1 + 2?\nAnswer:")["input_ids"])
    assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == student.tokenizer.eos_token_id
    assert student.tokenizer.decode(ids[prompt_len:-1]) == " 1 + 2 = 3. The answer is 3."


def test_truncation_cuts_the_prompt_then_the_rationale_middle_never_the_answer():
    student = tiny_student()
    task = chain_task()
    rationale = " ".join(f"{i} + 1 = {i + 1}." for i in range(30))
    target = task.target(rationale, "31")
    keep = task.answer_tail(target, "31")
    assert target[len(target) - keep:] == "The answer is 31."
    prompt = "Question: " + "a long preamble " * 20 + "What is 1 + 2?\nAnswer:"
    encoder = Encoder(student.tokenizer, True, 48)
    ids, labels = encoder.encode(prompt, target, keep_tail=keep)
    assert len(ids) == 48
    learnt = student.tokenizer.decode([t for t in labels if t != IGNORE_INDEX][:-1])
    assert learnt.endswith("The answer is 31.") and learnt.startswith(" 0 + 1 = 1.")
    assert labels[-1] == student.tokenizer.eos_token_id
    assert sum(t == IGNORE_INDEX for t in labels) == 16  # the end of the prompt, where the question is
    assert student.tokenizer.decode(ids[:16]).endswith("What is 1 + 2?\nAnswer:")
    # without a protected tail the old failure returns: the answer is what a plain cut loses
    plain = student.tokenizer.decode([t for t in encoder.encode(prompt, target)[1] if t != IGNORE_INDEX])
    assert "The answer is 31" not in plain


def test_max_length_auto_fits_the_data_and_drop_leaves_out_what_does_not_fit():
    student = tiny_student()
    recs = records(6)
    recs.append(TrainRecord("long", "Question: What is 1 + 1?\nAnswer:", " 1 + 1 = 2." * 60 + " The answer is 2.",
                            keep_tail=len("The answer is 2.")))
    auto = DistillDataModule(recs, [], Encoder(student.tokenizer, True, None), 2, 2)
    longest = max(auto.encoder.length(r.prompt, r.target) for r in recs)
    assert auto.lengths == {"max_length": -(-longest // 8) * 8, "truncated_examples": 0, "truncated_share": 0.0,
                            "dropped_too_long": 0}
    capped = DistillDataModule(recs, [], Encoder(student.tokenizer, True, None), 2, 2, max_length_cap=128)
    assert capped.lengths["max_length"] == 128 and capped.lengths["truncated_examples"] == 1
    assert len(capped.records) == 7 and capped.lengths["truncated_share"] == round(1 / 7, 4)
    dropped = DistillDataModule(recs, [], Encoder(student.tokenizer, True, 128, truncation="drop"), 2, 2)
    assert dropped.lengths["dropped_too_long"] == 1 and len(dropped.records) == 6
    assert "long" not in {r.id for r in dropped.records}


def test_seq2seq_batches_have_separate_labels():
    student = tiny_student("seq2seq")
    encoder = Encoder(student.tokenizer, False, 64)
    batch = encoder.collate([("What is 1 + 2?", " 3"), ("What is 10 + 20 + 30?", " 10 + 20 = 30. 60")])
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].shape[0] == 2
    assert batch["labels"].shape[1] != batch["input_ids"].shape[1]
    module = DistillModule(student, chain_task(), lr=1e-3)
    losses = module.example_losses({"main": batch})
    assert losses.shape == (2,) and torch.isfinite(losses).all()


def test_auxiliary_task_adds_its_weighted_loss():
    student = tiny_student()
    encoder = Encoder(student.tokenizer, True, 128)
    recs = [TrainRecord("a", "[label] Q: 1 + 2?", " 3", aux_prompt="[rationale] Q: 1 + 2?", aux_target=" 1 + 2 = 3.")]
    batch = encoder.collate_records(recs)
    plain = DistillModule(student, chain_task(), lr=1e-3).example_losses({"main": batch["main"]})
    aux_only = DistillModule(student, chain_task(), lr=1e-3).example_losses({"main": batch["aux"]})
    both = DistillModule(student, chain_task(), lr=1e-3, aux_loss_weight=0.5).example_losses(batch)
    assert torch.allclose(both, plain + 0.5 * aux_only)


@pytest.mark.parametrize("arch", ["causal", "seq2seq"])
def test_batched_generation_matches_one_prompt_at_a_time(arch):
    student = tiny_student(arch, init_seed=4)  # a seed whose random model does not emit EOS at once
    student.model.eval()
    prompts = ["Question: What is 1 + 2?\nAnswer:", "Q: 12 + 7 - 3?", "Question: What is 40 - 11 + 2 + 5 + 6?\nAnswer:"]
    batched = generate_texts(student, prompts, max_new_tokens=8)
    single = [generate_texts(student, [p], max_new_tokens=8)[0] for p in prompts]
    assert batched == single
    assert any(batched)


def test_sampling_returns_k_per_prompt():
    student = tiny_student()
    torch.manual_seed(0)
    out = generate_texts(student, ["Q: 1 + 2?", "Q: 3 + 4?"], 6, do_sample=True, temperature=1.0, num_return_sequences=3)
    assert len(out) == 6


class _Gradients(pl.Callback):
    """The gradient each optimiser step applies, as AdamW receives it."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append({n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters()})


def _train_epoch_adamw(batch_size, accumulate, n=10):
    """One epoch of the real module (fused AdamW, warm-up and cosine schedule) over n records."""
    student = tiny_student()
    encoder = Encoder(student.tokenizer, True, 128)
    weights = [0.2, 1.0, 3.0, 0.5, 1.5, 0.0, 2.0, 1.0, 0.7, 2.5][:n]
    datamodule = DistillDataModule(records(n, weights), [], encoder, batch_size, 4, seed=3)
    module = DistillModule(student, chain_task(), lr=1e-2, warmup_ratio=0.5)
    gradients = _Gradients()
    trainer = pl.Trainer(
        max_epochs=1, accumulate_grad_batches=accumulate, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", precision="32-true",
        callbacks=[gradients],
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2  # a full window, then the partial one the epoch ends with
    return gradients.steps, {k: v.detach().clone() for k, v in student.model.state_dict().items()}


def _relative_diff(a, b):
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)).item() for k in b if b[k].norm() > 1e-6)


def test_accumulation_with_a_partial_last_window_gives_the_same_adamw_updates():
    # 10 records: windows of 8 then 2 examples, whether as 1 x 8, 2 x 4 or 4 x 2 micro-batches
    reference_grads, reference = _train_epoch_adamw(8, 1)
    for batch_size, accumulate in ((4, 2), (2, 4)):
        grads, weights = _train_epoch_adamw(batch_size, accumulate)
        assert [_relative_diff(g, r) < 1e-5 for g, r in zip(grads, reference_grads)] == [True, True]
        assert _max_diff(weights, reference) < 1e-4  # 1% of lr: Adam amplifies float noise in near-zero gradients
    other_grads, _ = _train_epoch_adamw(3, 2)  # other windows (6 then 4 examples): other gradients
    assert _relative_diff(other_grads[0], reference_grads[0]) > 1e-2


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_scoring_target_positions_only_keeps_the_weighted_loss_and_its_gradient(precision):
    # the module's LM head reads target positions only and short CPU batches train with eager attention;
    # the reference computes every position's logits with the model's own (sdpa) attention
    student = tiny_student()
    weights = [0.2, 1.0, 3.0, 0.5, 1.5, 0.0, 2.0, 1.0]
    batch = Encoder(student.tokenizer, True, 128).collate_records(records(8, weights))
    main, params = batch["main"], list(student.model.parameters())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    head_rows, attention = [], []

    def seen(module, args, out):
        head_rows.append(args[0].shape[0])
        attention.append(student.model.config._attn_implementation)

    student.model.get_output_embeddings().register_forward_hook(seen)
    with autocast:
        logits = student.model(input_ids=main["input_ids"], attention_mask=main["attention_mask"]).logits
        reference = per_example_token_loss(logits, main["labels"], shift=True)
        losses = DistillModule(student, chain_task(), lr=1e-3).example_losses({"main": main})
    targets = int((main["labels"] != IGNORE_INDEX).sum())
    assert head_rows[-1] == targets < main["labels"].numel()  # prompts and padding skipped
    assert attention == ["sdpa", "eager"] and student.model.config._attn_implementation == "sdpa"  # then as loaded
    tolerance = 1e-5 if precision == "32-true" else 1e-2  # float32 rounding; bf16's 8-bit mantissa
    assert torch.allclose(losses, reference, rtol=tolerance, atol=0)
    expected = torch.autograd.grad(weighted_mean(reference, batch["weight"]), params)
    got = torch.autograd.grad(weighted_mean(losses, batch["weight"]), params)
    for e, g in zip(expected, got):
        assert (g - e).norm() <= tolerance * e.norm() + 1e-9


@pytest.mark.parametrize("warmup,total", [(0, 1), (0, 7), (1, 10), (3, 20), (25, 500)])
def test_the_schedule_is_the_ramp_every_figure_was_trained_with(warmup, total):
    """transformers' cosine schedule, one step on: no step at lr 0, the same lr at every step as the
    hand-written schedule before it, also after a resume from the scheduler's state."""
    from tailkd.training.module import warmup_cosine_schedule

    def expected(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    def optimiser():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=2e-4)

    opt = optimiser()
    scheduler = warmup_cosine_schedule(opt, warmup, total)
    seen = []
    for step in range(total):
        seen.append(opt.param_groups[0]["lr"])
        if step == total // 2:  # a run resumed here goes on with the same rates
            states = opt.state_dict(), scheduler.state_dict()
            opt = optimiser()
            scheduler = warmup_cosine_schedule(opt, warmup, total)
            opt.load_state_dict(states[0])
            scheduler.load_state_dict(states[1])
        opt.step()
        scheduler.step()
    assert seen == pytest.approx([2e-4 * expected(s) for s in range(total)], rel=1e-12, abs=1e-18)
    assert min(seen) > 0
