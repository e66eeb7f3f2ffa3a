#!/usr/bin/env bash
# bench/gpu.py on a bare machine with an NVIDIA card: makes a venv with a CUDA torch (the driver decides the wheel),
# the project, spandrel and scikit-image, then runs the benchmark with any arguments given. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-gpu}"
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    # CUDA 13 wheels need a 580+ driver; PyPI's torch 2.9 wheels are CUDA 12.8 (525+ through minor-version compatibility).
    cuda_major=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
    torch_spec="torch"
    if [ -n "$cuda_major" ] && [ "$cuda_major" -lt 13 ]; then torch_spec="torch==2.9.1"; fi
    "$PY" -m pip install -q "$torch_spec"
fi
"$PY" -m pip install -q -e . spandrel scikit-image
exec "$PY" bench/gpu.py "$@"
