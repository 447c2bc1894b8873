#!/usr/bin/env bash
# ARTE and ELAD's revision with a live teacher that makes real errors (issue 24): the embedded
# Qwen2.5-Coder-1.5B-Instruct as hf_local teacher (bfloat16, batched) on the testbed's CommonsenseQA
# questions, at equal spend per seed. Its answers are cached (paths.cache_dir), so every method that asks
# the same question pays compute once.
#   finetune: finetune and finetune_oracle on the teacher's answers to the task's own questions
#   arte:     ARTE aligning the teacher with DPO vs selecting the strategy the student preferred vs
#             neither (none: DPO's control, the unaligned teacher under the aligned one's prompt); a
#             drafted question without the choices its seed questions list is refused (the 1.5B writes
#             about half of its drafts so). The preference set is 20 questions of 60 candidates, not the
#             paper's 40 of 120: each question scores every drafted and tailored example once more, the
#             run's largest cost on a CPU. DPO takes one pair at a time, 8 accumulated (the same update in
#             half the memory: a 151k vocabulary's logits). Its strategy rationales are zero-shot, so
#             they get RATIONALE_MAX_TOKENS, not the few-shot teacher's 128 (which cut 76 of 104 before
#             their answer). Run it alone on 24 GB: a job peaks at 16.3-16.5 GB in DPO's training
#             (docs/results.md)
#   elad:     ELAD with revision vs without, ELAD's selection vs random, and the equal-steps control
# TEACHER: prompted few-shot as PaLM was by default (right on 0.54-0.58 of the testbed's questions, 35
# tokens an answer, docs/results.md). TEACHER=qwen-1.5b-embedded MAX_NEW_TOKENS=256 is the zero-shot 1.5B
# (0.44-0.47 right, ~200 tokens of option-by-option analysis an answer, which a 135M student learnt the
# format of and not the task: not the default).
# On two CPU cores one budget-300 seed costs hours; on a GPU add student=qwen2.5-coder-0.5b-embedded or
# 1.5B for a larger student.
#   DATA=../shared/data/commonsense_qa_palm PARTS="finetune elad" bash multirun_scripts/live_teacher.sh \
#     hydra.sweep.dir=multirun/live_teacher hydra/launcher=parallel trainer.num_threads=1
#   tailkd-report multirun/live_teacher        # per method; ELAD's rounds as accuracy-vs-spend curves
# Before paying for revision runs, multirun_scripts/revision_probe.py shows what the teacher writes for
# ELAD's revision prompt on recorded explanations: the few-shot 1.5B kept the student's answer in 97% of
# its revisions (docs/results.md), so with it revision trains the student on its own answers.
DATA=${DATA:-../shared/data/commonsense_qa_palm}
BUDGET=${BUDGET:-300}
SEEDS=${SEEDS:-0,1,2}
TEST_SIZE=${TEST_SIZE:-400}
PARTS=${PARTS:-"finetune arte elad"}
TEACHER=${TEACHER:-qwen-1.5b-embedded-csqa-fewshot}
EPOCHS=${EPOCHS:-4}  # as the testbed's (multirun_scripts/testbed.sh): 2 leave the 135M student under-trained
ELAD_EPOCHS=${ELAD_EPOCHS:-}  # ELAD's epochs a round (default: _sweep.sh's elad_epochs of EPOCHS)
ELAD_CANDIDATES=${ELAD_CANDIDATES:-}   # questions ELAD scores a round (default: _sweep.sh's elad_candidates of the largest budget)
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-}  # the student's generation limit (the task's 128 by default)
PREFERENCE_SIZE=${PREFERENCE_SIZE:-20}  # ARTE's preference set, chosen among 3x as many candidates
RATIONALE_MAX_TOKENS=${RATIONALE_MAX_TOKENS:-384}  # ARTE's drafted rationales (the zero-shot 1.5B writes ~200)
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  [ -d "$DATA" ] || { echo "no $DATA: set DATA to the commonsense_qa_palm folder (its questions)" >&2; exit 2; }
  DATA=$(cd "$DATA" && pwd)   # Hydra changes into each job's folder
  source "$(dirname "$0")/_sweep.sh" live_teacher "$@"
  COMMON=(task=commonsense_qa task.data_dir="$DATA" task.train_size=null task.test_size="$TEST_SIZE"
          teacher="$TEACHER" teacher.dtype=bfloat16 teacher.batch_size=16
          budget.max_queries="$BUDGET" seed="$SEEDS" trainer.eval_before=false logger=csv)
  [ -z "$MAX_NEW_TOKENS" ] || COMMON+=(task.max_new_tokens="$MAX_NEW_TOKENS")
  local E="trainer.pl.max_epochs=$EPOCHS" EE="trainer.pl.max_epochs=${ELAD_EPOCHS:-$(elad_epochs "$EPOCHS")}"
  for part in $PARTS; do
    case $part in
      finetune) sweep finetune   method=finetune,finetune_oracle                                "${COMMON[@]}" "$E" ;;
      arte)     sweep arte       method=arte method.align=dpo,select,none method.preference_size="$PREFERENCE_SIZE" \
                                 method.preference_candidates=$((3 * PREFERENCE_SIZE)) method.dpo.batch_size=1 \
                                 method.dpo.accumulate=8 method.rationale_max_tokens="$RATIONALE_MAX_TOKENS" \
                                                                                                "${COMMON[@]}" "$E" ;;
      elad)     sweep elad       method=elad method.revision=true,false method.selection=elad,random \
                                 method.candidates="${ELAD_CANDIDATES:-$(elad_candidates "$BUDGET")}"                           "${COMMON[@]}" "$EE"
                sweep elad_steps method=finetune_equal_steps_elad                               "${COMMON[@]}" "$EE" ;;
      *) echo "unknown part $part (finetune arte elad)" >&2; exit 2 ;;
    esac
  done
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
