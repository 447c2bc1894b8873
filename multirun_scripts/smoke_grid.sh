#!/usr/bin/env bash
# A minute-scale grid on CPU (tiny student, experiment=smoke): finetune vs TAiL x two budgets x two
# seeds, 8 jobs, one multirun. Checks the sweep -> report loop end to end:
#   bash multirun_scripts/smoke_grid.sh hydra.sweep.dir=/tmp/smoke && tailkd-report /tmp/smoke
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" smoke_grid "$@"
  sweep . experiment=smoke method=finetune,tail budget.max_queries=16,32 seed=0,1 teacher.corruption.rate=0.4
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
