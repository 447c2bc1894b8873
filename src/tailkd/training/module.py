"""The LightningModule: per-example weighted fine-tuning, and greedy-decoding evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import get_cosine_schedule_with_warmup

from tailkd.models.generation import generate_texts
from tailkd.models.student import Student
from tailkd.progress import Progress
from tailkd.tasks import Task
from tailkd.training.data import ExampleBatch
from tailkd.training.distributed import gather_lists
from tailkd.training.loss import (
    per_example_target_loss,
    per_example_token_loss,
    scored_positions,
    weighted_mean,
)


def rng_states() -> dict[str, Any]:
    import random

    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    # plain tensors and numbers only: checkpoints load with torch.load(weights_only=True)
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}


def set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


@contextmanager
def head_on(model: torch.nn.Module, scored: torch.Tensor):
    """The decoder's output layer (the LM head) reads only the hidden states at ``scored`` ([batch, length]
    bool) while in the block: the logits come out ``[scored.sum(), vocab]``. At the runs' shapes over half of
    the positions are prompt or padding, and the head is the model's largest matmul and feeds a
    full-vocabulary softmax. A pre-hook on the module, not ``logits_to_keep``, which takes a mask only in
    recent transformers; what the model does after its head (soft-capping, scaling) is per logit."""
    head = model.get_output_embeddings()

    def select(module, args):
        hidden = args[0]
        if hidden.shape[:-1] != scored.shape:  # not this batch's hidden states: leave it alone
            return None
        return (hidden[scored], *args[1:])

    handle = head.register_forward_pre_hook(select) if head is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


# On CPU, torch's scaled_dot_product_attention backward (its flash kernel) is 3-4x slower than eager attention's
# up to a few hundred tokens: 14% of a SmolLM2-135M bf16 step at 8 x 56 tokens, 25% at 64 x 56; the two
# are even near 256 tokens and sdpa wins beyond (bench/training_step.py, docs/results.md)
EAGER_ATTENTION_MAX_LENGTH = 256


@contextmanager
def training_attention(model: torch.nn.Module, input_ids: torch.Tensor):
    """Eager attention for a short CPU batch while in the block (the backward keeps what the forward chose);
    the model's own choice otherwise and afterwards, so generation is untouched. transformers' models read
    ``config._attn_implementation`` at each forward; a model that does not just keeps its attention."""
    config = getattr(model, "config", None)
    chosen = getattr(config, "_attn_implementation", None)
    if chosen != "sdpa" or input_ids.device.type != "cpu" or input_ids.shape[-1] > EAGER_ATTENTION_MAX_LENGTH:
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = chosen


class DistillModule(pl.LightningModule):
    def __init__(
        self,
        student: Student,
        task: Task,
        *,
        lr: float,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
        aux_loss_weight: float = 0.0,
        eval_prompt_prefix: str = "",
        stop: Sequence[str] = (),
    ):
        super().__init__()
        self.student = student
        self.model = student.model  # registered as a submodule, so Lightning moves and checkpoints it
        self.task = task
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.warmup_ratio = float(warmup_ratio)
        self.aux_loss_weight = float(aux_loss_weight)
        self.eval_prompt_prefix = eval_prompt_prefix
        self.stop = list(stop)
        self.eval_tag = "test"
        self.log_prefix = ""  # "warmup/" while a two-stage method warms the student up
        self.predictions: list[dict[str, Any]] = []
        self.data_position: tuple[int, int] | None = None
        self.records_digest: str | None = None
        self._fused = False
        self._progress: Progress | None = None

    # -- training ----------------------------------------------------------------------------------
    def example_losses(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-example loss ``[batch]``: the main target, plus the weighted auxiliary task if any."""
        losses = self._token_loss(batch["main"])
        if "aux" in batch and self.aux_loss_weight:
            losses = losses + self.aux_loss_weight * self._token_loss(batch["aux"])
        return losses

    def _token_loss(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in encoded.items() if k != "labels"}
        labels = encoded["labels"]
        if not self.student.is_causal:
            inputs["labels"] = labels  # the model builds decoder inputs (and its own loss) from the labels
            return per_example_token_loss(self.model(**inputs).logits, labels, shift=False)
        scored = scored_positions(labels)
        with head_on(self.model, scored), training_attention(self.model, inputs["input_ids"]):
            logits = self.model(**inputs).logits
        if logits.dim() == 3:  # a model whose logits do not come from its output embeddings module
            logits = logits[scored]
        return per_example_target_loss(logits, labels, scored)

    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps submodule modes as found
        self.model.train()

    # -- progress off a terminal (on one, Lightning's own bar shows it) -----------------------------
    def _start_progress(self, total: float, desc: str, unit: str, initial: int = 0) -> None:
        self._progress = None
        if self.trainer.is_global_zero and math.isfinite(total) and total > 0:
            self._progress = Progress(int(total), desc, unit, bar=False, initial=initial)

    def _advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(n)

    def on_train_start(self) -> None:
        stage = f" ({self.log_prefix.rstrip('/')})" if self.log_prefix else ""
        self._start_progress(self.trainer.estimated_stepping_batches, f"training{stage}", "step",
                             initial=self.trainer.global_step)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._progress is not None:  # optimiser steps: a batch of an accumulation window is not one
            self._progress.reach(self.trainer.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.example_losses(batch)
        size = len(batch["ids"])
        self.log(f"{self.log_prefix}train/loss", weighted_mean(losses.detach(), batch["weight"]), prog_bar=True,
                 batch_size=size)
        self.log(f"{self.log_prefix}train/unweighted_loss", losses.detach().mean(), batch_size=size)
        accumulate = self.trainer.accumulate_grad_batches
        window = self._window_examples(batch_idx, size)
        # each optimiser step is the weighted mean over every example of its accumulation window, the
        # last partial window of an epoch too; Lightning divides by accumulate_grad_batches, undone here
        return (losses * batch["weight"].to(losses.dtype)).sum() / window * accumulate

    def _window_examples(self, batch_idx: int, batch_size: int) -> int:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "window_examples"):
            return batch_size * self.trainer.accumulate_grad_batches
        return datamodule.window_examples(batch_idx, self.trainer.accumulate_grad_batches, self.trainer.world_size)

    # -- resuming ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # dropout draws from the global RNG: a resumed run must continue its stream where it stopped
        checkpoint["tailkd_rng"] = rng_states()
        if self.data_position is not None:  # (epoch, batches of it done): where the data order resumes
            checkpoint["tailkd_data_position"] = self.data_position
        if self.records_digest is not None:  # what it was trained on: a resume must train on the same
            checkpoint["tailkd_records"] = self.records_digest

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tailkd_rng" in checkpoint:
            set_rng_states(checkpoint["tailkd_rng"])

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        # the fused kernel makes the optimiser step ~7x faster on CPU; fp16 loss scaling cannot use it
        self._fused = all(p.device.type in ("cpu", "cuda") for p in params) and "16-mixed" != str(
            self.trainer.precision
        )
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=self._fused)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine_schedule(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning refuses to clip for fused optimisers under mixed precision, for fear of scaled
        # gradients; without fp16 loss scaling (see configure_optimizers) the gradients are unscaled
        if self._fused and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            params = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # -- evaluation --------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.predictions = []
        self._start_progress(self._test_questions(), f"{self.eval_tag}: greedy outputs", "q")

    def _test_questions(self) -> int:
        """How many questions this rank answers: its sampler's length (under DDP, its share)."""
        loaders = self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        try:
            return sum(len(loader.sampler) for loader in loaders if loader is not None)
        except (TypeError, AttributeError):  # a sampler of unknown length: no progress
            return 0

    def test_step(self, batch: ExampleBatch, batch_idx: int) -> None:
        prompts = [self.eval_prompt_prefix + self.task.prompt(e) for e in batch.examples]
        texts = generate_texts(self.student, prompts, self.task.max_new_tokens, stop=self.stop)
        for example, text in zip(batch.examples, texts):
            predicted = self.task.extract_answer(text, example)
            self.predictions.append({
                "id": example.id,
                "question": example.question,
                "gold": example.answer,
                "output": text,
                "predicted": predicted,
                "correct": predicted == example.answer,
            })
        self._advance(len(texts))

    def on_test_epoch_end(self) -> None:
        # under DDP each rank saw a shard (padded with repeats): every rank gets all, once each, in order
        gathered = gather_lists(self.predictions)
        if len(gathered) != len(self.predictions):
            unique = {p["id"]: p for p in reversed(gathered)}
            order = {e.id: i for i, e in enumerate(getattr(self.trainer.datamodule, "test_examples", []))}
            self.predictions = sorted(unique.values(), key=lambda p: order.get(p["id"], len(order)))
        self.log(f"{self.eval_tag}/accuracy", self.accuracy, batch_size=max(1, len(self.predictions)))

    @property
    def accuracy(self) -> float:
        if not self.predictions:
            return float("nan")
        return sum(p["correct"] for p in self.predictions) / len(self.predictions)


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over ``warmup`` of ``total`` optimiser steps, then cosine decay to zero: step s
    trains at lr x (s + 1) / (warmup + 1) during the warm-up.

    transformers' schedule gives its first step lr 0, a step wasted; started one step into a schedule
    one step longer it is the ramp above, the one every figure in docs/results.md was trained with."""
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]  # LambdaLR's base lr when it does not start at step 0
    return get_cosine_schedule_with_warmup(optimizer, warmup + 1, total + 1, last_epoch=0)
