"""The LightningModule: per-example weighted fine-tuning, and greedy-decoding evaluation."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pytorch_lightning as pl
import torch

from tailkd.models.generation import generate_texts
from tailkd.models.student import Student
from tailkd.tasks import Example, Task
from tailkd.training.loss import per_example_token_loss, weighted_mean


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
        self.predictions: list[dict[str, Any]] = []

    # -- training ----------------------------------------------------------------------------------
    def example_losses(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-example loss ``[batch]``: the main target, plus the weighted auxiliary task if any."""
        losses = self._token_loss(batch["main"])
        if "aux" in batch and self.aux_loss_weight:
            losses = losses + self.aux_loss_weight * self._token_loss(batch["aux"])
        return losses

    def _token_loss(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in encoded.items() if k != "labels"}
        if not self.student.is_causal:
            inputs["labels"] = encoded["labels"]  # the model builds decoder inputs from the labels
        logits = self.model(**inputs).logits
        return per_example_token_loss(logits, encoded["labels"], shift=self.student.is_causal)

    def on_train_epoch_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps submodule modes as found
        self.model.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.example_losses(batch)
        loss = weighted_mean(losses, batch["weight"])
        size = len(batch["ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/unweighted_loss", losses.detach().mean(), batch_size=size)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_ratio * total)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation --------------------------------------------------------------------------------
    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if isinstance(batch, list):  # test batches are Examples; generation moves its own tensors
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: list[Example], batch_idx: int) -> None:
        prompts = [self.eval_prompt_prefix + self.task.prompt(e) for e in batch]
        texts = generate_texts(self.student, prompts, self.task.max_new_tokens, stop=self.stop)
        for example, text in zip(batch, texts):
            predicted = self.task.extract_answer(text, example)
            self.predictions.append({
                "id": example.id,
                "question": example.question,
                "gold": example.answer,
                "output": text,
                "predicted": predicted,
                "correct": predicted == example.answer,
            })

    def on_test_epoch_end(self) -> None:
        self.log(f"{self.eval_tag}/accuracy", self.accuracy, batch_size=max(1, len(self.predictions)))

    @property
    def accuracy(self) -> float:
        if not self.predictions:
            return float("nan")
        return sum(p["correct"] for p in self.predictions) / len(self.predictions)
