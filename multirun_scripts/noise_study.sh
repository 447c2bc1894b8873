#!/usr/bin/env bash
# Controlled noise study on the embedded task (issue 4): finetune vs TAiL with six signal presets
# (all, sc, ta_student, ta_teacher, sc+ta_teacher, none), the simulated teacher at two error rates,
# two budgets, three seeds: 7 x 2 x 2 x 3 = 84 runs. Four Hydra multiruns into one folder, in the
# order that lets later jobs reuse what earlier ones paid for or computed: finetune buys the
# annotations (every TAiL job then reads them from the cache), signals=all computes every raw signal
# (the one- and two-signal presets reuse them through the signal cache, see tailkd/signals/cache.py).
# The equal-steps control is multirun_scripts/schedule_control.sh.
#   bash multirun_scripts/noise_study.sh                        # sequential, all cores per job
#   bash multirun_scripts/noise_study.sh hydra/launcher=parallel trainer.num_threads=1   # 2 jobs at once
# Grid dimensions come from the environment (RATES, BUDGETS, SEEDS); other arguments go to every
# multirun (e.g. hydra.sweep.dir=DIR). Then: tailkd-report DIR
RATES=${RATES:-0.2,0.4}
BUDGETS=${BUDGETS:-50,100}
SEEDS=${SEEDS:-0,1,2}
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" noise_study "$@"
  COMMON=(task=chain_sum task.train_size=200 task.test_size=60 teacher.corruption.rate="$RATES"
          budget.max_queries="$BUDGETS" seed="$SEEDS" logger=csv)
  sweep finetune  method=finetune                       "${COMMON[@]}"
  sweep tail_all  method=tail signals=all               "${COMMON[@]}"
  sweep tail_ablation method=tail signals=sc,ta_student,ta_teacher,sc+ta_teacher "${COMMON[@]}"
  sweep tail_none method=tail signals=none              "${COMMON[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
