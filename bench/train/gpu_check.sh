#!/usr/bin/env bash
# A short GRPO run on the verifier task on a GPU machine that has torch, transformers,
# accelerate and peft but not trl or datasets, and no network (bench/train/README.md).
#
#   bench/train/fetch_wheels.sh              # here, with network: trl + pydantic wheels (~4 MB)
#   bench/train/gpu_check.sh                 # there (carry bench/train/wheels): prints the
#                                            # format reward and tokens/s per step
#   bench/train/gpu_check.sh --cpu --tiny    # anywhere: the same path on the CPU, a minute or two
#
# What the machine lacks is put in a folder of its own ($GPU_CHECK_SITE) at the front of
# PYTHONPATH, never into its Python: trl and pydantic unpacked from the carried wheels, and
# stand-ins (bench/train/shims) for datasets, pandas and pyarrow, which TRL imports at import
# time but this run does not use. Extra arguments go to gpu_check.py (--steps, --lr, --out).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/proofloop_gpu_check_site}
WHEELS=${GPU_CHECK_WHEELS:-bench/train/wheels}
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

have() { "$PY" -c "import $1" 2>/dev/null; }
unpack() {  # unpack the carried wheels named by these globs (a wheel is a zip of its files)
  for glob in "$@"; do
    found=("$WHEELS"/$glob)
    [ -e "${found[0]}" ] || { echo "gpu_check: $WHEELS/$glob is missing: run bench/train/fetch_wheels.sh" \
                                   "where there is network, and carry $WHEELS" >&2; exit 2; }
    "$PY" -m zipfile -e "${found[0]}" "$SITE"
  done
}

have trl || unpack 'trl-*.whl'
have pydantic || unpack 'pydantic-[0-9]*.whl' 'pydantic_core-*.whl' 'annotated_types-*.whl' 'typing_inspection-*.whl'
for module in datasets pandas pyarrow; do
  have "$module" || cp -r "bench/train/shims/$module" "$SITE/"
done
"$PY" -c "import torch, transformers, trl; print('python', __import__('sys').version.split()[0], '| torch', \
torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| cuda', torch.cuda.is_available())"
exec "$PY" bench/train/gpu_check.py "$@"
