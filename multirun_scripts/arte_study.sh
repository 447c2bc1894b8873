#!/usr/bin/env bash
# ARTE with DPO vs ARTE selecting the preferred strategy vs finetune, at equal teacher budget (queries),
# the embedded SmolLM2-135M as both teacher (teacher=hf_local) and student on the embedded task. Sized
# for a 2-core CPU: 8 drafted questions x 4 strategies, a preference set of 12.
#   bash multirun_scripts/arte_study.sh hydra.sweep.dir=multirun/arte hydra/launcher=parallel trainer.num_threads=1
#   tailkd-report multirun/arte
BUDGETS=${BUDGETS:-80}
SEEDS=${SEEDS:-0,1,2}
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" arte_study "$@"
  COMMON=(task=chain_sum task.train_size=200 task.test_size=60 teacher=hf_local teacher.max_tokens=96
          budget.max_queries="$BUDGETS" seed="$SEEDS" logger=csv)
  sweep finetune method=finetune "${COMMON[@]}"
  sweep arte method=arte method.align=dpo,select method.num_questions=8 method.preference_size=12 \
        method.preference_candidates=24 "${COMMON[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
