#!/usr/bin/env bash
# Downloads what gpu_check.sh installs on a machine that lacks it and reaches no network: trl,
# and pydantic (proofloop.protocol needs it) with its own dependencies, as wheels for CPython
# 3.12 on x86-64 Linux, into bench/train/wheels/ (ignored by git; about 4 MB). Run it here,
# on a machine with network, before sending the working tree with `carry: bench/train/wheels`.
# The versions are those of this checkout's environment (PY, default .venv/bin/python), so the
# GPU machine runs what the tests ran.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-../../.venv/bin/python}
[ -x "$PY" ] || PY=python3
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p wheels
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels \
  "trl==$(version trl)" "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" \
  "annotated-types==$(version annotated-types)" "typing-inspection==$(version typing-inspection)"
ls -l wheels
