#!/bin/bash
# Sourced by prepare_instance.sh and run_instance.sh: sets CERTPRUNE_PY, the Python that has
# certprune: $CERTPRUNE_PYTHON if set, else the environment made by install_tool.sh, else python3.
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${CERTPRUNE_PYTHON:-}" ]; then
    CERTPRUNE_PY="$CERTPRUNE_PYTHON"
elif [ -x "$SCRIPT_DIR/.venv/bin/python" ]; then
    CERTPRUNE_PY="$SCRIPT_DIR/.venv/bin/python"
else
    CERTPRUNE_PY=python3
fi
