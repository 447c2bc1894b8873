#!/usr/bin/env bash
# The GPU check of issue 21 (item 6), one run of a few minutes: tests/test_device.py (its GPU cases run
# only where CUDA is), then bench/gpu_mfu.py on random-initialised models of the real shapes (SmolLM2-135M,
# Qwen2.5-0.5B, Qwen2.5-1.5B): the training step at 16 x 1024 tokens, the signals' sampling and the TA's
# scoring, each as MFU against the GPU's dense bf16 peak (goal: >= 40% for the training step). This
# checkout's code runs (src/ first on PYTHONPATH), offline. Arguments go to gpu_mfu.py:
#
#     bash bench/gpu.sh                                  # everything
#     bash bench/gpu.sh --models smollm2-135m --only train
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
python -c 'import sys, torch; torch.cuda.is_available() or sys.exit("bench/gpu.sh: torch sees no CUDA device"); print("GPU", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)' || exit 1
start=$SECONDS
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_device.py
tests=$?
echo "tests/test_device.py: exit $tests, $((SECONDS - start)) s"
timeout 420 python bench/gpu_mfu.py --device cuda "$@"
bench=$?
echo "bench/gpu_mfu.py: exit $bench; bench/gpu.sh: $((SECONDS - start)) s in all"
exit $((tests || bench))
