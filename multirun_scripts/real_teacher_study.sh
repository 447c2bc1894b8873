#!/usr/bin/env bash
# TAiL's signals on a real imperfect teacher: ChatGPT chains of thought on GSM8K, 59% right
# (../shared/data/gsm8k_chatgpt, replayed with teacher=recorded), SmolLM2-135M as student and the
# 4x larger Qwen2.5-Coder-0.5B (another model family) as TA. At each budget and seed every method
# trains on the same bought questions:
#   finetune, finetune for TAiL's number of steps, distilling step by step,
#   tail with weights from none / each signal / all three, tail filtering with all three,
#   tail buying the least self-consistent questions after warm-up (select).
# The warmed-up student is the same for every tail variant of a seed, so it is sampled once (signal cache).
#   DATA=../shared/data/gsm8k_chatgpt bash multirun_scripts/real_teacher_study.sh hydra.sweep.dir=multirun/real_teacher
#   tailkd-report multirun/real_teacher                              # vs finetune
#   tailkd-report multirun/real_teacher --baseline "tail signals=none"  # the signals alone
DATA=${DATA:-../shared/data/gsm8k_chatgpt}
BUDGETS=${BUDGETS:-100,200}
SEEDS=${SEEDS:-0,1,2}
TEST_SIZE=${TEST_SIZE:-150}
K=${K:-4}                 # self-consistency samples per question
TA=${TA:-qwen2.5-coder-0.5b-embedded}
SIGNALS=${SIGNALS:-none,sc,ta_student,ta_teacher,all}   # tail's weight presets
# select samples the warmed-up student (K times) on the next SELECT_CANDIDATES unbought questions and buys
# the least self-consistent first; null samples the whole pool (947: ~1 h per run on 2 CPU cores)
SELECT_CANDIDATES=${SELECT_CANDIDATES:-300}
FINETUNE=${FINETUNE:-finetune,finetune_equal_steps}   # the finetune part's methods
# which sub-sweeps run
PARTS=${PARTS:-"finetune dsbs tail_weight tail_filter tail_select"}
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  [ -f "$DATA/teacher.jsonl" ] || { echo "no $DATA/teacher.jsonl: set DATA to the gsm8k_chatgpt folder" >&2; exit 2; }
  DATA=$(cd "$DATA" && pwd)   # Hydra changes into each job's folder
  source "$(dirname "$0")/_sweep.sh" real_teacher_study "$@"
  # the untrained student is the same in every job: score it once with tailkd-eval, not 60 times
  COMMON=(task=gsm8k task.data_dir="$DATA" task.train_size=null task.test_size="$TEST_SIZE"
          task.max_new_tokens=192 teacher=recorded teacher.path="$DATA/teacher.jsonl"
          budget.max_queries="$BUDGETS" seed="$SEEDS" trainer.eval_before=false logger=csv)
  TAIL=(method=tail ta="$TA" signals.self_consistency.k="$K")
  for part in $PARTS; do
    case $part in
      finetune)    sweep finetune    method="$FINETUNE"                                     "${COMMON[@]}" ;;
      dsbs)        sweep dsbs        method=distill_step_by_step                             "${COMMON[@]}" ;;
      tail_weight) sweep tail_weight "${TAIL[@]}" signals="$SIGNALS"                      "${COMMON[@]}" ;;
      tail_filter) sweep tail_filter "${TAIL[@]}" signals=all signals.use=filter             "${COMMON[@]}" ;;
      tail_select) sweep tail_select "${TAIL[@]}" signals=select signals.select_candidates="$SELECT_CANDIDATES" "${COMMON[@]}" ;;
      *) echo "unknown part $part (finetune dsbs tail_weight tail_filter tail_select)" >&2; exit 2 ;;
    esac
  done
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
