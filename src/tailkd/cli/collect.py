"""``tailkd-collect``: annotate a task's training pool with the teacher, up to the budget."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tailkd.config import config_dir, run_hydra_cli, validate_collect
from tailkd.console import quiet
from tailkd.errors import TailkdError

log = logging.getLogger("tailkd")


def run(cfg: DictConfig) -> dict:
    from tailkd.methods.annotate import buy_annotations, load_data, write_results

    validate_collect(cfg)  # the teacher, budget and cache settings before any data is loaded or request sent
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    data = load_data(cfg)
    if cfg.get("collect", {}).get("dry_run"):
        return dry_run(cfg, data, run_dir)
    annotations, spend = buy_annotations(cfg, data, run_dir)
    results = {
        "task": data.task.name,
        "teacher_backend": cfg.teacher.backend,
        "teacher_model": cfg.teacher.get("model"),
        "seed": int(cfg.seed),
        "train_pool_size": len(data.train),
        "num_annotations": len(annotations),
        **{k: cfg.budget.get(k) for k in ("max_queries", "max_tokens", "max_usd")},
        **spend,
    }
    write_results(run_dir, results)
    log.info("%d annotations (%d from the cache), %.4f USD paid now; in %s", len(annotations),
             spend["teacher_cache_hits"], spend["teacher_paid_usd"], run_dir / "annotations.jsonl")
    print(json.dumps(results, indent=2))
    return results


def dry_run(cfg: DictConfig, data, run_dir: Path) -> dict:
    """``collect.dry_run=true``: the estimate for the configured budget, printed and in estimate.json;
    nothing is sent, nothing is written to the ledger."""
    from tailkd.methods.annotate import buying_order, make_collector

    collector = make_collector(cfg, data, run_dir / ".dry-run")
    estimate = collector.estimate(buying_order(cfg, data), expected_output_tokens=int(cfg.collect.expected_output_tokens))
    estimate.update(task=data.task.name, teacher_backend=cfg.teacher.backend, teacher_model=collector.backend.model)
    (run_dir / "estimate.json").write_text(json.dumps(estimate, indent=2) + "\n")
    print(f"{estimate['requests']} requests to send ({estimate['already_cached']} more answered from the cache, free) "
          f"for {data.task.name} with {estimate['teacher_model']}:\n"
          f"  worst case: {estimate['worst_case_tokens']} tokens, {estimate['worst_case_usd']['live']:.4f} USD live, "
          f"{estimate['worst_case_usd']['batch']:.4f} USD batch\n"
          f"  expected:   {estimate['expected_tokens']} tokens, {estimate['expected_usd']['live']:.4f} USD live, "
          f"{estimate['expected_usd']['batch']:.4f} USD batch\n"
          f"nothing was sent; {run_dir / 'estimate.json'}")
    return estimate


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="collect")
def _main(cfg: DictConfig) -> None:
    quiet()
    try:
        run(cfg)
    except TailkdError as err:
        log.error("tailkd-collect: %s", err)
        sys.exit(2)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_hydra_cli("tailkd-collect", _main)


if __name__ == "__main__":
    main()
