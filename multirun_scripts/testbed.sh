#!/usr/bin/env bash
# The testbed on a teacher's real errors: PaLM-540B's chains of thought on CommonsenseQA (77% right,
# ../shared/data/commonsense_qa_palm, replayed with teacher=recorded), SmolLM2-135M as student.
# At each budget and seed every method trains on the same bought questions.
#   curve:    finetune and the two oracles (finetune_oracle: the right answers only; finetune_gold: gold
#             answers) over budgets: the headroom a perfect signal has, and the seed-to-seed spread
#   methods:  every method at one budget (BUDGETS=300 ...): finetune_equal_steps, distill_step_by_step,
#             tail none / sc / ta_student / ta_teacher / all (weight), tail all (filter), tail oracle, select,
#             ELAD's selection without revision (a recorded teacher cannot revise) and its equal-steps
#             control (finetune_equal_steps_elad: ELAD trains each annotation again every round)
#   DATA=../shared/data/commonsense_qa_palm PARTS=curve BUDGETS=100,300,1000 bash multirun_scripts/testbed.sh \
#     hydra.sweep.dir=multirun/testbed_curve
#   tailkd-report multirun/testbed_curve            # vs finetune, with the share of the oracle's headroom
# The full table of docs/results.md (every method at budget 300, 4 epochs; ELAD 2 a round, see ELAD_EPOCHS):
#   DATA=../shared/data/commonsense_qa_palm BUDGETS=300 PARTS="curve steps tail_weight tail_filter tail_select elad" \
#     bash multirun_scripts/testbed.sh hydra.sweep.dir=multirun/testbed_e4 trainer.num_threads=1 \
#     hydra/launcher=parallel hydra.launcher.n_jobs=2
# Another teacher on the same questions (TEACHER=qwen-1.5b-embedded, any teacher config): its answers to each
# seed's bought questions are collected once (tailkd-collect into $SWEEP_DIR/collect_s<seed>, the largest
# budget; a smaller budget buys a prefix of the same questions) and every job replays its seed's collection:
#   TEACHER=qwen-1.5b-embedded TEACHER_ARGS="teacher.dtype=bfloat16 teacher.batch_size=16" MAX_NEW_TOKENS=256 \
#     BUDGETS=300 ORACLES=finetune,finetune_oracle bash multirun_scripts/testbed.sh hydra.sweep.dir=multirun/testbed_qwen15
DATA=${DATA:-../shared/data/commonsense_qa_palm}
BUDGETS=${BUDGETS:-100,300,1000}
SEEDS=${SEEDS:-0,1,2,3,4}
TEST_SIZE=${TEST_SIZE:-400}
EPOCHS=${EPOCHS:-4}       # 2 (the trainer's default) leave the 135M student under-trained here (docs/results.md); runs there before this knob: EPOCHS=2
ELAD_EPOCHS=${ELAD_EPOCHS:-}  # ELAD's epochs a round (default: _sweep.sh's elad_epochs of EPOCHS)
K=${K:-4}                 # self-consistency samples per question
TA=${TA:-qwen2.5-coder-0.5b-embedded}
SIGNALS=${SIGNALS:-none,sc,ta_student,ta_teacher,all,oracle}
SELECT_CANDIDATES=${SELECT_CANDIDATES:-300}
ELAD_CANDIDATES=${ELAD_CANDIDATES:-}   # questions ELAD scores a round (default: _sweep.sh's elad_candidates of the largest budget)
ORACLES=${ORACLES:-finetune,finetune_oracle,finetune_gold}
PARTS=${PARTS:-"curve"}
TEACHER=${TEACHER:-palm}  # palm: DATA's teacher.jsonl replayed; else a teacher config, collected per seed
TEACHER_ARGS=${TEACHER_ARGS:-}  # that teacher's settings, for tailkd-collect
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-}  # the student's generation limit (the task's 128 by default; a teacher that writes long needs more)
TAILKD_COLLECT=${TAILKD_COLLECT:-tailkd-collect}
set -euo pipefail
# one collection per seed of the largest budget's questions; a finished one is kept (nothing bought twice)
collect() {
  local largest seed
  largest=$(tr , '\n' <<<"$BUDGETS" | sort -n | tail -1)
  for seed in ${SEEDS//,/ }; do
    [ -f "$SWEEP_DIR/collect_s$seed/results.json" ] && continue
    echo "== $SWEEP_DIR/collect_s$seed: teacher=$TEACHER $TEACHER_ARGS" >&2
    # shellcheck disable=SC2086  # TEACHER_ARGS holds several overrides
    $TAILKD_COLLECT task=commonsense_qa task.data_dir="$DATA" task.train_size=null teacher="$TEACHER" $TEACHER_ARGS \
      budget.max_queries="$largest" seed="$seed" hydra.run.dir="$SWEEP_DIR/collect_s$seed"
  done
}

main() {
  if [ "$TEACHER" = palm ] && [ ! -f "$DATA/teacher.jsonl" ]; then
    echo "no $DATA/teacher.jsonl: set DATA to the commonsense_qa_palm folder" >&2; exit 2
  fi
  DATA=$(cd "$DATA" && pwd)   # Hydra changes into each job's folder
  source "$(dirname "$0")/_sweep.sh" testbed "$@"
  local replay="$DATA/teacher.jsonl"
  if [ "$TEACHER" != palm ]; then
    case $SWEEP_DIR in /*) ;; *) SWEEP_DIR=$PWD/$SWEEP_DIR ;; esac
    collect
    # one override for every seed (${seed} is resolved in each job), so tailkd-report pairs the seeds
    replay="$SWEEP_DIR/collect_s\${seed}/annotations.jsonl"
  fi
  # the untrained student is the same in every job: score it once with tailkd-eval, not in every job
  COMMON=(task=commonsense_qa task.data_dir="$DATA" task.train_size=null task.test_size="$TEST_SIZE"
          teacher=recorded teacher.path="$replay"
          budget.max_queries="$BUDGETS" seed="$SEEDS" trainer.eval_before=false logger=csv)
  [ -z "$MAX_NEW_TOKENS" ] || COMMON+=(task.max_new_tokens="$MAX_NEW_TOKENS")
  TAIL=(method=tail ta="$TA" signals.self_consistency.k="$K")
  local E="trainer.pl.max_epochs=$EPOCHS" EE="trainer.pl.max_epochs=${ELAD_EPOCHS:-$(elad_epochs "$EPOCHS")}"
  for part in $PARTS; do
    if [ "$TEACHER" != palm ] && [[ $part == elad || $part == tail_select ]]; then
      echo "PARTS=$part chooses questions beyond the collected ones; with TEACHER=$TEACHER run curve steps tail_weight tail_filter" >&2
      exit 2
    fi
    case $part in
      curve)       sweep curve       method="$ORACLES"                                   "${COMMON[@]}" "$E" ;;
      steps)       sweep steps       method=finetune_equal_steps,distill_step_by_step     "${COMMON[@]}" "$E" ;;
      tail_weight) sweep tail_weight "${TAIL[@]}" signals="$SIGNALS"                      "${COMMON[@]}" "$E" ;;
      tail_filter) sweep tail_filter "${TAIL[@]}" signals=all signals.use=filter           "${COMMON[@]}" "$E" ;;
      tail_select) sweep tail_select "${TAIL[@]}" signals=select signals.select_candidates="$SELECT_CANDIDATES" "${COMMON[@]}" "$E" ;;
      # tested once, after the last round: the rounds' tests were half of an ELAD run's time on a CPU
      elad)        sweep elad        method=elad method.revision=false method.candidates="${ELAD_CANDIDATES:-$(elad_candidates "$BUDGETS")}" \
                                     method.test_every_round=false "${COMMON[@]}" "$EE"
                   sweep elad_steps  method=finetune_equal_steps_elad                     "${COMMON[@]}" "$EE" ;;
      *) echo "unknown part $part (curve steps tail_weight tail_filter tail_select elad)" >&2; exit 2 ;;
    esac
  done
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
