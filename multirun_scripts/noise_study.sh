#!/usr/bin/env bash
# Controlled noise study on the embedded task: finetune vs TAiL signal sets, simulated teacher at two
# error rates, two budgets, three seeds (Hydra multirun, sequential). Extra arguments go to Hydra,
# e.g. `bash multirun_scripts/noise_study.sh hydra.sweep.dir=multirun/noise teacher.corruption.rate=0.4`.
set -euo pipefail
COMMON=(task=chain_sum task.train_size=200 task.test_size=60 seed=0,1,2
        teacher.corruption.rate=0.2,0.4 budget.max_queries=50,100 logger=csv)
tailkd-train -m method=finetune "${COMMON[@]}" "$@"
tailkd-train -m method=tail signals=none,all,ta_teacher,sc "${COMMON[@]}" "$@"
