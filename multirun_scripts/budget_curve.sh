#!/usr/bin/env bash
# Accuracy vs teacher budget for finetune and TAiL (signals=all) on one task, several seeds: the
# report's accuracy_vs_budget.png. Defaults run on the embedded task with the simulated teacher:
#   bash multirun_scripts/budget_curve.sh hydra/launcher=parallel trainer.num_threads=1
#   TASK=gsm8k BUDGETS=100,200,400,800 bash multirun_scripts/budget_curve.sh teacher=openai
# Grid dimensions come from the environment; other arguments go to every multirun. Then: tailkd-report DIR
TASK=${TASK:-chain_sum}
BUDGETS=${BUDGETS:-25,50,100,200}
SEEDS=${SEEDS:-0,1,2}
SIGNALS=${SIGNALS:-all}
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" budget_curve "$@"
  GRID=(task="$TASK" budget.max_queries="$BUDGETS" seed="$SEEDS")
  sweep finetune method=finetune                  "${GRID[@]}"
  sweep tail     method=tail signals="$SIGNALS"   "${GRID[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
