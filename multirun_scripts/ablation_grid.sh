#!/usr/bin/env bash
# TAiL's ablation grid: task x student size x teacher budget x signal preset x seed, with finetune as
# the baseline at every (task, student, budget, seed) and TAiL without warm-up. Three multiruns into
# one folder, finetune first so that it buys the annotations and every TAiL job reads them from the
# teacher cache (a question is paid once per sweep). GPU-scale: 4 tasks x 3 students x 3 budgets x
# 3 seeds x 10 configurations = 1080 jobs with the defaults below; use a launcher, e.g.
#   bash multirun_scripts/ablation_grid.sh teacher=openai hydra/launcher=slurm hydra.launcher.partition=gpu \
#        'task.data_dir=/data/${task.name}'        # one folder per task, {split}.jsonl in the hub schema
# Grid dimensions come from the environment (a value given twice to Hydra would duplicate jobs):
TASKS=${TASKS:-gsm8k,svamp,strategyqa,commonsense_qa}
STUDENTS=${STUDENTS:-smollm2-135m,smollm2-360m,qwen2.5-0.5b}
BUDGETS=${BUDGETS:-250,500,1000}
SEEDS=${SEEDS:-0,1,2}
SIGNALS=${SIGNALS:-none,sc,ta_student,ta_teacher,sc+ta_student,sc+ta_teacher,ta_student+ta_teacher,all}
# Other arguments go to every multirun (teacher, launcher, hydra.sweep.dir=DIR, ...). Then: tailkd-report DIR
set -euo pipefail
# one function, read whole before it runs: editing this file during a long study cannot derail it
main() {
  source "$(dirname "$0")/_sweep.sh" ablation_grid "$@"
  GRID=(task="$TASKS" student="$STUDENTS" budget.max_queries="$BUDGETS" seed="$SEEDS")
  sweep finetune    method=finetune                        "${GRID[@]}"
  sweep tail        method=tail signals="$SIGNALS"         "${GRID[@]}"
  sweep tail_no_warmup method=tail_no_warmup signals=all   "${GRID[@]}"
  echo "tailkd-report $SWEEP_DIR"
}
main "$@"
