# Sourced by the multirun scripts: `source _sweep.sh NAME "$@"` sets SWEEP_DIR and defines
# `sweep SUBDIR OVERRIDES...`, one Hydra multirun into $SWEEP_DIR/SUBDIR with the user's arguments last.
# The user's hydra.sweep.dir=DIR names the whole study's folder; every sub-sweep goes below it, and
# the W&B group is the study's folder name unless logger.wandb.group is given.
_name=$1; shift
SWEEP_DIR="multirun/${_name}_$(date +%Y-%m-%d_%H-%M-%S)"
# studies keep results, not hundreds of students (trainer.save_student=true on the command line keeps them)
USER_ARGS=(trainer.save_student=false)
_group=""
for _arg in "$@"; do
  case "$_arg" in
    hydra.sweep.dir=*) SWEEP_DIR="${_arg#hydra.sweep.dir=}" ;;
    logger.wandb.group=*) _group=1; USER_ARGS+=("$_arg") ;;
    *) USER_ARGS+=("$_arg") ;;
  esac
done
[ -n "$_group" ] || USER_ARGS+=("logger.wandb.group=$(basename "$SWEEP_DIR")")
TAILKD_TRAIN=${TAILKD_TRAIN:-tailkd-train}

sweep() {
  local sub=$1; shift
  echo "== $SWEEP_DIR ($sub): $*" >&2
  local dir="$SWEEP_DIR/$sub"; [ "$sub" = . ] && dir=$SWEEP_DIR
  $TAILKD_TRAIN -m "$@" "hydra.sweep.dir=$dir" "${USER_ARGS[@]}"
}

# ELAD's epochs a round that take as many optimiser steps as EPOCHS do for the other methods: its 3 rounds
# train again on everything bought so far (1/3 + 2/3 + 3/3 of the budget: twice the data), so half the
# epochs; its control, finetune_equal_steps_elad, counts the steps the same way
elad_epochs() { echo $(($1 / 2 > 0 ? $1 / 2 : 1)); }

# ELAD's candidates a round for a study whose budgets are $1 (queries, comma-separated) over $2 rounds
# (conf/method/elad.yaml's 3 unless given): a round buys among them only, so at least a round's share of
# the largest, and 200 (enough to rank by uncertainty at smaller budgets; the studies before this default,
# at budget 300, used 200)
elad_candidates() {
  local largest rounds=${2:-3} share
  largest=$(tr , '\n' <<<"$1" | sort -n | tail -1)
  share=$(((largest + rounds - 1) / rounds))
  echo $((share > 200 ? share : 200))
}
