#!/usr/bin/env bash
# Is TAiL's gain at 40% noise the two-stage schedule or just more optimiser steps? The noise study's
# setting (chain_sum, a pool of 200, 60 test questions, simulated teacher at 20% and 40% corruption,
# budgets 50 and 100, seeds 0-2) with three methods on the same annotations: finetune, finetune for as
# many optimiser steps as TAiL takes (method=finetune_equal_steps), and TAiL with every weight 1
# (signals=none: the schedule alone). 3 x 2 x 2 x 3 = 36 runs.
#   bash multirun_scripts/schedule_control.sh hydra.sweep.dir=multirun/control hydra/launcher=parallel trainer.num_threads=1
#   tailkd-report multirun/control --baseline finetune_equal_steps
RATES=${RATES:-0.2,0.4}
BUDGETS=${BUDGETS:-50,100}
SEEDS=${SEEDS:-0,1,2}
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" schedule_control "$@"
  COMMON=(task=chain_sum task.train_size=200 task.test_size=60 teacher.corruption.rate="$RATES"
          budget.max_queries="$BUDGETS" seed="$SEEDS" logger=csv)
  sweep finetune             method=finetune                 "${COMMON[@]}"
  sweep finetune_equal_steps method=finetune_equal_steps     "${COMMON[@]}"
  sweep tail_none            method=tail signals=none        "${COMMON[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
