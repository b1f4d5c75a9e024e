#!/usr/bin/env bash
# Multi-node GRPO for proofloop's roles with verl 0.9.1 on Ray (recipes/verl/README.md).
#
#   on the head node:      bash recipes/verl/launch.sh head
#   on every other node:   HEAD=10.0.0.1 bash recipes/verl/launch.sh worker
#   then, on the head:     TASK=verifier MODEL=/models/base NNODES=4 bash recipes/verl/launch.sh train [overrides...]
#                          TASK=generator MODEL=/ckpt/verifier JUDGE_MODEL=/ckpt/verifier NNODES=4 JUDGE_NODES=2 \
#                              bash recipes/verl/launch.sh train [overrides...]
#   to stop a node:        bash recipes/verl/launch.sh stop
#   PRINT_CONFIG=1 with `train` prints the composed trainer config instead of training.
#
# Every node needs this checkout at the same path with `make verl-env` run in it (plus vLLM on
# GPU nodes, see the README), and the data files at the paths the config names.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VERL_VENV:-$PWD/.venv-verl}
PORT=${RAY_PORT:-6379}
GPUS=${GPUS_PER_NODE:-8}
# grpo_judged (src/proofloop/train/verl_grpo.py) must be registered in every verl process: Ray's
# workers inherit the environment of `ray start`, so it is exported before it.
export VERL_USE_EXTERNAL_MODULES=proofloop.train.verl_grpo

case "${1:-}" in
  head)
    "$VENV/bin/ray" start --head --port="$PORT" --num-gpus="$GPUS" --dashboard-host=0.0.0.0 ;;
  worker)
    "$VENV/bin/ray" start --address="${HEAD:?set HEAD to the head node address}:$PORT" --num-gpus="$GPUS" ;;
  stop)
    "$VENV/bin/ray" stop ;;
  train)
    shift
    task=${TASK:?set TASK to verifier, meta-verifier or generator}
    config=grpo
    extra=()
    if [ "$task" = generator ]; then
      config=generator
      extra+=("reward.reward_model.model_path=${JUDGE_MODEL:?set JUDGE_MODEL to the verifier checkpoint}"
              "reward.reward_model.nnodes=${JUDGE_NODES:-1}" "reward.reward_model.n_gpus_per_node=$GPUS")
    fi
    data=${DATA_DIR:-data}
    RAY_ADDRESS=${RAY_ADDRESS:-auto} exec "$VENV/bin/python" -m verl.trainer.main_ppo \
      --config-path="$PWD/recipes/verl" --config-name="$config" \
      actor_rollout_ref.model.path="${MODEL:?set MODEL to the checkpoint to train}" \
      data.train_files="$data/$task.parquet" data.val_files="$data/$task-val.parquet" \
      trainer.nnodes="${NNODES:-1}" trainer.n_gpus_per_node="$GPUS" \
      trainer.experiment_name="${EXPERIMENT:-$task-grpo}" \
      "${extra[@]}" "$@" ${PRINT_CONFIG:+--cfg job} ;;
  *)
    sed -n '2,12p' "$0"; exit 2 ;;
esac
