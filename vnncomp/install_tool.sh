#!/bin/bash
# VNN-COMP tool interface: install certprune (run once by the organisers).
# usage: install_tool.sh v1
# Creates a virtual environment in vnncomp/.venv (next to this script) and installs the
# certprune checkout that contains this folder into it, with onnxruntime. Needs python3 >= 3.10
# with the venv module and network access to PyPI. Exit code 0 on success, 1 on a wrong argument,
# non-zero when an installation step fails.
set -euo pipefail

VERSION_STRING=v1
if [ "$#" -ne 1 ] || [ "$1" != "$VERSION_STRING" ]; then
    echo "install_tool.sh: expected one argument '$VERSION_STRING', got '$*'" >&2
    exit 1
fi

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOL_DIR="$(dirname "$SCRIPT_DIR")"
PYTHON="${PYTHON:-python3}"

echo "Installing certprune from $TOOL_DIR into $SCRIPT_DIR/.venv"
"$PYTHON" -m venv "$SCRIPT_DIR/.venv"
"$SCRIPT_DIR/.venv/bin/python" -m pip install --upgrade pip
# the CPU build of torch (no CUDA download); certprune runs on CPU
"$SCRIPT_DIR/.venv/bin/python" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
"$SCRIPT_DIR/.venv/bin/python" -m pip install "$TOOL_DIR" onnxruntime
"$SCRIPT_DIR/.venv/bin/python" -m certprune --help > /dev/null
echo "certprune installed"
