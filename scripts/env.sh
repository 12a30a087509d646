#!/usr/bin/env bash
# Sourced by the Makefile targets: makes sure libtorch (from the PyPI torch wheel) is
# installed in a per-user cache and exports what tch's build needs. Idempotent: a second
# run only checks a marker file.
set -euo pipefail

TORCH_VERSION="2.13.0"
PY="${PRUNESCOPE_PYTHON:-python3}"
PY_TAG="$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
CACHE_ROOT="${PRUNESCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prunescope}"
VENV="$CACHE_ROOT/torch-$TORCH_VERSION-$PY_TAG"
MARKER="$VENV/.prunescope-complete"

if [ ! -f "$MARKER" ]; then
    echo "prunescope: installing torch==$TORCH_VERSION (libtorch) into $VENV (once per user)" >&2
    rm -rf "$VENV"
    mkdir -p "$CACHE_ROOT"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
    "$VENV/bin/python" -c "import torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__"
    touch "$MARKER"
fi

# torch-sys asks `python3` on PATH where the wheel's libtorch lives.
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export PRUNESCOPE_TORCH_VENV="$VENV"
