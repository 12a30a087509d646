#!/usr/bin/env bash
# Sourced by the Makefile targets: makes sure libtorch (from the PyPI torch wheel) is
# installed in a per-user cache and exports what tch's build needs. Idempotent: a second
# run only checks a marker file. Sourced, so it sets no shell options and returns on error.

prunescope_setup_torch() {
    local torch_version="2.13.0"
    local py="${PRUNESCOPE_PYTHON:-python3}"
    local py_tag cache_root venv marker
    py_tag="$("$py" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')" || {
        echo "prunescope: $py not found; Python 3 is needed to install the torch wheel (libtorch)" >&2
        return 1
    }
    cache_root="${PRUNESCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prunescope}"
    venv="$cache_root/torch-$torch_version-$py_tag"
    marker="$venv/.prunescope-complete"
    if [ ! -f "$marker" ]; then
        echo "prunescope: installing torch==$torch_version (libtorch) into $venv (once per user)" >&2
        rm -rf "$venv" && mkdir -p "$cache_root" \
            && "$py" -m venv "$venv" \
            && "$venv/bin/python" -m pip install --quiet "torch==$torch_version" \
            && "$venv/bin/python" -W ignore -c "import torch; assert torch.__version__.split('+')[0] == '$torch_version', torch.__version__" \
            && touch "$marker" || {
            echo "prunescope: installing torch==$torch_version failed (see above)" >&2
            return 1
        }
    fi
    # The reference the ONNX tests and benchmarks hold the executor against; never a
    # dependency of prunescope itself.
    local ort_version="1.32.0"
    local ort_marker="$venv/.prunescope-onnxruntime-$ort_version"
    if [ ! -f "$ort_marker" ]; then
        echo "prunescope: installing onnxruntime==$ort_version and numpy into $venv (the ONNX reference, once per user)" >&2
        "$venv/bin/python" -m pip install --quiet "onnxruntime==$ort_version" numpy \
            && "$venv/bin/python" -c "import onnxruntime, numpy" \
            && touch "$ort_marker" || {
            echo "prunescope: installing onnxruntime==$ort_version failed (see above)" >&2
            return 1
        }
    fi
    # torch-sys asks `python3` on PATH where the wheel's libtorch lives.
    export PATH="$venv/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
    export PRUNESCOPE_TORCH_VENV="$venv"
}

prunescope_setup_torch
