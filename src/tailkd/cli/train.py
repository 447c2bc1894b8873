"""``tailkd-train``: run one experiment. The recipe named by ``method`` does the work."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from tailkd import timing
from tailkd.config import config_dir, run_hydra_cli, validate
from tailkd.console import quiet
from tailkd.errors import ConfigError, TailkdError

log = logging.getLogger("tailkd")


def run(cfg: DictConfig) -> dict:
    """Run the experiment ``cfg`` describes; returns the results also written to results.json."""
    import pytorch_lightning as pl

    from tailkd.methods.pipeline import write_results
    from tailkd.training.distributed import launched_rank
    from tailkd.training.trainer import check_trainer_kwargs, wandb_mode

    cfg = resumed_config(cfg)
    validate(cfg)
    recipe = build_recipe(cfg)
    rank = launched_rank()
    if rank == 0:  # on this machine, before anything is paid; the DDP ranks rank 0 starts need not try again
        check_trainer_kwargs(cfg.trainer.pl)
        wandb_mode(cfg.logger)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if rank > 0:  # a DDP rank Lightning started: the run's files are rank 0's to write
        run_dir = run_dir / f".rank{rank}"
        run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.trainer.get("num_threads"):
        import torch

        torch.set_num_threads(int(cfg.trainer.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True)
    timing.reset()  # this run's phases only (a multirun runs its jobs in one process)
    results = recipe.run(cfg, run_dir)
    write_results(run_dir, results)
    before = results["test_accuracy_before"]
    log.info("test accuracy %.4f (before training %s); results in %s", results["test_accuracy"],
             "not measured" if before is None else f"{before:.4f}", run_dir / "results.json")
    return results


def build_recipe(cfg: DictConfig):
    """The recipe ``method`` names. A setting it refuses is the user's to fix: its own
    :class:`ConfigError`, not wrapped in Hydra's instantiation error with a traceback."""
    try:
        return hydra.utils.instantiate(cfg.method)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, TailkdError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(f"method={cfg.method.get('name')}: {cause}") from err
        raise


def resumed_config(cfg: DictConfig) -> DictConfig:
    """With ``resume=PATH``, the config the run in PATH was started with: its checkpoints are found
    by that config, and it continues as it began. Otherwise ``cfg`` itself."""
    value = cfg.get("resume", "auto")
    if value is None or isinstance(value, bool) or str(value).lower() in ("auto", "false", "never", "true"):
        return cfg
    folder = Path(str(value)).expanduser()
    config = folder / "config_resolved.yaml"
    if not config.is_file():
        raise ConfigError(f"resume={value}: {config} does not exist; give the folder of a tailkd-train run")
    if (folder / "results.json").is_file():
        raise ConfigError(f"resume={value}: that run finished (it has results.json); nothing to resume")
    earlier = OmegaConf.load(config)
    earlier.resume = "auto"
    log.info("resuming the run in %s with the config it was started with", folder)
    return earlier


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _main(cfg: DictConfig) -> float:
    quiet()
    try:
        return run(cfg)["test_accuracy"]
    except TailkdError as err:
        log.error("tailkd-train: %s", err)
        sys.exit(2)


def main() -> None:
    # nothing in a run should wait on a model hub or a W&B login unless the user asked for it
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_hydra_cli("tailkd-train", _main)


if __name__ == "__main__":
    main()
