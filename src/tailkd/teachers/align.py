"""Align a local teacher to preference pairs with DPO (TRL's ``DPOTrainer``) and a LoRA adapter.

The reference model is the teacher before alignment: with a ``peft_config`` TRL scores the reference
with the adapter disabled, i.e. the untouched base. After training the teacher backend generates
through the adapter, and its cache identity names the adapter's weights, so aligned answers are never
mistaken for the base teacher's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from tailkd.errors import ConfigError
from tailkd.models.logprobs import token_logprobs
from tailkd.progress import Progress, track

log = logging.getLogger(__name__)

# in ``saved``, after the adapter: its inputs' key, fingerprint and figures. training.checkpoints.STAGE_DONE,
# which teachers cannot import (one layer); a test holds the two equal
DONE = "done.json"


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: every linear layer


@dataclass(frozen=True)
class DPOSettings:
    """``method.dpo``: TRL's DPOTrainer with a LoRA adapter on the teacher. These defaults are
    conf/method/arte.yaml's (a test holds them equal); an unknown key is refused, not ignored."""

    beta: float = 0.1
    lr: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 2  # pairs per step; memory grows with batch_size x length x vocabulary
    accumulate: int = 4
    warmup_ratio: float = 0.1
    schedule: str = "cosine"
    max_length: int = 1024
    lora: LoraSettings = field(default_factory=LoraSettings)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | None) -> DPOSettings:
        cfg = dict(cfg or {})
        lora = dict(cfg.pop("lora", None) or {})
        for where, given, known in (("method.dpo", cfg, cls), ("method.dpo.lora", lora, LoraSettings)):
            unknown = sorted(set(given) - {f.name for f in fields(known)})
            if unknown:
                raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {[f.name for f in fields(known)]}")
        try:
            targets = lora.pop("target_modules", None)
            adapter = LoraSettings(**{k: type(getattr(LoraSettings(), k))(v) for k, v in lora.items()},
                                   target_modules=tuple(targets) if targets else None)
            return cls(**{k: type(getattr(cls(), k))(v) for k, v in cfg.items()}, lora=adapter)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"method.dpo: {err}") from None

    def trl_args(self, **run: Any) -> dict[str, Any]:
        """DPOConfig's keyword arguments for these settings (``run``: the rest, output folder and seeds)."""
        # transformers 5 reads a warmup_steps below 1 as a share of the steps (warmup_ratio is deprecated)
        return dict(beta=self.beta, learning_rate=self.lr, num_train_epochs=self.epochs,
                    per_device_train_batch_size=self.batch_size, gradient_accumulation_steps=self.accumulate,
                    warmup_steps=self.warmup_ratio, lr_scheduler_type=self.schedule, max_length=self.max_length,
                    **run)


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompts: Sequence[str], completions: Sequence[str],
                        desc: str = "DPO: log-probabilities") -> list[float]:
    """log p(completion + EOS | prompt) for each pair, summed over the completion's tokens, tokenised
    as TRL does (the prompt, then prompt + completion as one string)."""
    was_training = model.training
    model.eval()
    out = []
    for prompt, completion in track(list(zip(prompts, completions)), desc, unit="text"):
        prompt_ids = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + completion + (tokenizer.eos_token or ""))["input_ids"]
        start = 0
        while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
            start += 1
        ids = torch.tensor([full], device=model.device)
        logits = model(input_ids=ids).logits[0, :-1].float()
        token_lp = token_logprobs(logits, ids[0, 1:])
        out.append(token_lp[max(start, 1) - 1:].sum().item())
    model.train(was_training)
    return out


def margins(model, tokenizer, pairs: Sequence[Mapping[str, str]], desc: str = "DPO: margins") -> list[float]:
    """log p(chosen | prompt) - log p(rejected | prompt), pair by pair (``desc`` labels the progress)."""
    prompts = [p["prompt"] for p in pairs]
    chosen = completion_logprobs(model, tokenizer, prompts, [p["chosen"] for p in pairs], f"{desc} (chosen)")
    rejected = completion_logprobs(model, tokenizer, prompts, [p["rejected"] for p in pairs], f"{desc} (rejected)")
    return [c - r for c, r in zip(chosen, rejected)]


def progress_callback():
    """A TrainerCallback that shows DPO's steps through :mod:`tailkd.progress` (a bar on a terminal, a
    log line every tenth elsewhere): the trainer's own bar is off (``disable_tqdm``), as its carriage
    returns garble a log, and the PrinterCallback that replaces it prints every step's numbers."""
    from transformers import TrainerCallback

    class DPOProgress(TrainerCallback):
        progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(state.max_steps, "DPO: aligning the teacher", unit="step",
                                     initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.reach(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.close()

    return DPOProgress()


def adapter_fingerprint(model) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, param in sorted((n, p) for n, p in model.named_parameters() if "lora_" in n):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def dpo_align(backend, pairs: Sequence[Mapping[str, str]], settings: DPOSettings, out_dir: Path,
              seed: int = 0, saved: Path | None = None) -> dict[str, Any]:
    """Trains a LoRA adapter on the teacher of ``backend`` (hf_local) with DPO on ``pairs``
    (``prompt``/``chosen``/``rejected`` strings), saves it to ``out_dir`` and makes the backend generate
    with it. Returns the mean margin before and after, and the training figures. ``saved`` (the run's
    checkpoint folder for this stage) keeps the adapter and figures for a rerun of a killed run, which
    restores them when the teacher, pairs, settings and seed are the same."""
    if not pairs:
        raise ConfigError("DPO got no preference pairs: too few drafts were scored apart (raise method.num_questions)")
    key = _stage_key(backend.identity, pairs, settings, seed)
    restored = _restore(backend.student.model, Path(saved), key) if saved is not None else None
    policy, results = restored or _train(backend.student, pairs, settings, seed)
    tokenizer = backend.student.tokenizer
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    fingerprint = adapter_fingerprint(policy)
    if saved is not None and restored is None:
        policy.save_pretrained(saved)
        tmp = Path(saved) / f"{DONE}.tmp"
        tmp.write_text(json.dumps({"key": key, "fingerprint": fingerprint, "results": results}))
        os.replace(tmp, Path(saved) / DONE)  # last: a run killed while saving trains again, never reads half an adapter
    backend.use_adapter(policy, fingerprint)  # last: the policy's LoRA layers go
    log.info("DPO on %d pairs%s: mean margin %.3f -> %.3f", len(pairs), " (restored)" if restored else "",
             results["dpo_margin_before"], results["dpo_margin_after"])
    return {**results, "dpo_restored": restored is not None}


def _stage_key(identity: str, pairs: Sequence[Mapping[str, str]], settings: DPOSettings, seed: int) -> str:
    blob = json.dumps({"teacher": identity, "pairs": [dict(p) for p in pairs], "settings": asdict(settings),
                       "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _restore(model, saved: Path, key: str):
    """(the policy, its figures) from the adapter a killed run left in ``saved``, if it was trained on
    these inputs and reads back whole; else None (and the folder's record is dropped: DPO trains again)."""
    from peft import PeftModel
    from safetensors.torch import load_file

    done = saved / DONE
    if not done.is_file():
        return None
    why = None
    try:
        stage = json.loads(done.read_text())
        if stage.get("key") != key:
            why = "it was trained on other pairs, settings or seed"
        else:
            load_file(saved / "adapter_model.safetensors")  # readable, before it changes the teacher
            policy = PeftModel.from_pretrained(model, str(saved))
            if adapter_fingerprint(policy) == stage.get("fingerprint"):
                policy.eval()
                return policy, stage["results"]
            policy.unload()  # the LoRA layers out of the teacher again
            why = "its weights are not the ones trained"
    except Exception as err:  # damaged or partial files, whatever the reader raises
        why = f"it cannot be read ({type(err).__name__}: {err})"
    log.warning("DPO: the adapter in %s is not restored, %s; training it again", saved, why)
    done.unlink(missing_ok=True)
    return None


def _train(teacher, pairs: Sequence[Mapping[str, str]], settings: DPOSettings, seed: int):
    """(the policy: the teacher with its trained adapter, its figures)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = teacher.model, teacher.tokenizer
    before = margins(model, tokenizer, pairs, "DPO: margins before")  # before TRL wraps the model in place
    lora = settings.lora
    on_gpu = model.device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="tailkd-dpo-") as scratch:
        args = DPOConfig(**settings.trl_args(
            output_dir=scratch, report_to="none", save_strategy="no", logging_steps=1,
            use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(), fp16=False, seed=int(seed),
            data_seed=int(seed), disable_tqdm=True, activation_checkpointing=False, dataloader_pin_memory=False,
        ))
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=list(lora.target_modules) if lora.target_modules else "all-linear",
                                 task_type="CAUSAL_LM")
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(list(pairs)),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[progress_callback()])
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    policy = trainer.model
    policy.eval()
    after = margins(policy, tokenizer, pairs, "DPO: margins after")
    return policy, {"dpo_pairs": len(pairs), "dpo_steps": int(result.global_step),
                    "dpo_loss": float(result.training_loss), "dpo_margin_before": _mean(before),
                    "dpo_margin_after": _mean(after),
                    "dpo_reward_accuracy_last": history[-1].get("rewards/accuracies") if history else None}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
