"""Build the Lightning Trainer and its loggers from the ``trainer`` and ``logger`` config groups."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from tailkd.console import drop_anonymous
from tailkd.errors import ConfigError


def build_loggers(cfg: Mapping[str, Any], run_dir: Path, run_name: str, flat_config: dict,
                  group: str | None = None, job_type: str | None = None, tags: list[str] | None = None) -> list[Logger]:
    """CSV always; W&B when enabled, offline unless ``logger.wandb.mode=online`` or WANDB_MODE says so.
    ``logger.wandb.tags`` are added to ``tags``; ``logger.wandb.group`` wins over ``group``."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    wandb_cfg = cfg.get("wandb") or {}
    if wandb_cfg.get("enabled", False):
        from pytorch_lightning.loggers import WandbLogger

        mode = wandb_mode(cfg)
        logger = WandbLogger(
            project=wandb_cfg.get("project", "tailkd"),
            entity=wandb_cfg.get("entity"),
            group=wandb_cfg.get("group") or group,
            job_type=job_type,
            tags=list(tags or []) + list(wandb_cfg.get("tags") or []),
            name=run_name,
            save_dir=str(run_dir),
            mode=mode,
        )
        drop_anonymous(logger._wandb_init)  # else W&B warns about a setting nobody set (tailkd.console)
        logger.log_hyperparams(flat_config)
        loggers.append(logger)
    return loggers


def wandb_mode(cfg: Mapping[str, Any]) -> str | None:
    """The W&B mode of the ``logger`` config (None: no W&B): ``WANDB_MODE``, else ``logger.wandb.mode``."""
    wandb_cfg = cfg.get("wandb") or {}
    if not wandb_cfg.get("enabled", False):
        return None
    mode = os.environ.get("WANDB_MODE") or wandb_cfg.get("mode", "offline")
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(f"logger.wandb.mode={mode!r}: use online, offline or disabled")
    return mode


def build_trainer(pl_kwargs: Mapping[str, Any], loggers: list[Logger], run_dir: Path) -> pl.Trainer:
    kwargs = dict(pl_kwargs)
    strategy = kwargs.get("strategy")
    if isinstance(strategy, Mapping) and "_target_" in strategy:  # trainer=fsdp: a strategy object
        from hydra.utils import instantiate

        kwargs["strategy"] = instantiate(strategy)
    try:
        return pl.Trainer(
            logger=loggers,
            default_root_dir=str(run_dir),
            enable_model_summary=False,
            **kwargs,
        )
    except (TypeError, ValueError, MisconfigurationException) as err:
        raise ConfigError(f"trainer.pl: {err}") from err


def check_trainer_kwargs(pl_kwargs: Mapping[str, Any]) -> None:
    """Builds the Lightning Trainer ``trainer.pl`` describes once and throws it away (milliseconds, no
    model): an accelerator this machine lacks, an unknown keyword, a bad precision or device count is
    named before the teacher is paid, not by Lightning after it."""
    quiet = [logging.getLogger(name) for name in ("pytorch_lightning.utilities.rank_zero",
                                                  "lightning_fabric.utilities.rank_zero")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # "GPU available: ..." belongs to the real trainer's start
        logger.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="tailkd-check-") as scratch:
            build_trainer(pl_kwargs, [], Path(scratch))
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def finish_loggers(loggers: list[Logger]) -> None:
    for logger in loggers:
        logger.finalize("success")
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()
