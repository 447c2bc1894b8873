#!/usr/bin/env bash
# ELAD's selection and revision at equal teacher spend (USD: revisions cost more than fresh answers):
# elad vs answer_entropy vs random selection, each with and without revision, and finetune, on the
# embedded task with the simulated teacher (it revises against gold), several seeds.
#   bash multirun_scripts/elad_study.sh hydra.sweep.dir=multirun/elad hydra/launcher=parallel trainer.num_threads=1
#   tailkd-report multirun/elad           # accuracy_vs_spend.png: each ELAD run a curve over its rounds
USD=${USD:-0.02}
SEEDS=${SEEDS:-0,1,2}
SELECTIONS=${SELECTIONS:-elad,answer_entropy,random}
CANDIDATES=${CANDIDATES:-64}   # unbought questions scored per round
K=${K:-4}                      # sampled explanations per question
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" elad_study "$@"
  COMMON=(task=chain_sum task.train_size=200 task.test_size=60 teacher.corruption.rate=0.3
          budget.max_queries=null budget.max_usd="$USD" seed="$SEEDS" logger=csv)
  sweep finetune method=finetune                                                  "${COMMON[@]}"
  sweep elad     method=elad method.selection="$SELECTIONS" method.revision=true,false \
                 method.candidates="$CANDIDATES" method.k="$K" "${COMMON[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
