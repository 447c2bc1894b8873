"""Stands in for tailkd-train in the multirun scripts' test (TAILKD_TRAIN="python sweep_dry_run.py"):
composes the config for every value of every swept dimension and builds its recipe instead of running
the jobs (ELAD also checks that its candidates can spend the budget), and appends what it was asked to
sweep to $SWEEP_LOG. SWEEP_COMPOSE=0 only logs: for tests of the arguments alone, which then skip the
imports and compositions (seconds a sweep)."""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    assert argv[0] == "-m", "the scripts run Hydra multiruns"
    overrides = argv[1:]
    # Hydra's own keys (sweep dir, launcher) are checked by Hydra when the real run starts
    job = [o for o in overrides if not o.startswith("hydra")]
    dims = {o.split("=", 1)[0]: o.split("=", 1)[1].split(",") for o in job}
    if os.environ.get("SWEEP_COMPOSE", "1") != "0":
        compose_each(dims)
    with open(os.environ["SWEEP_LOG"], "a") as log:
        log.write(json.dumps({"overrides": overrides, "dims": dims}) + "\n")


def compose_each(dims: dict[str, list[str]]) -> None:
    from hydra import compose, initialize_config_dir

    from tailkd.cli.train import build_recipe
    from tailkd.config import config_dir, validate

    base = [f"{k}={v[0]}" for k, v in dims.items()]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for key, values in dims.items():
            for value in values:
                cfg = compose("train", overrides=[o for o in base if not o.startswith(key + "=")] + [f"{key}={value}"])
                validate(cfg)
                recipe = build_recipe(cfg)
                if hasattr(recipe, "check_candidates"):  # the pool: task.train_size, or every question
                    recipe.check_candidates(cfg.budget.get("max_queries"), cfg.task.get("train_size") or 10**9)


if __name__ == "__main__":
    main(sys.argv[1:])
