#!/bin/bash
# VNN-COMP tool interface: decide one instance and write the result file.
# usage: run_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT
# The result file's first line is sat / unsat / timeout / unknown / error; after sat the
# counterexample follows as ((X_0 v) ... (Y_0 v)), re-checked in float32 on the model.
# The timeout (seconds) counts from the start of certprune's process, start-up included.
# Settings per category (allowed by the rules; never per instance): vnncomp/config/CATEGORY.toml
# if present, passed as --config. Exit code 0 when a result file was written (whatever its
# word), 1 on wrong arguments or when no result file can be written there.

VERSION_STRING=v1
if [ "$#" -ne 6 ] || [ "$1" != "$VERSION_STRING" ]; then
    echo "run_instance.sh: expected 'v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT', got '$*'" >&2
    exit 1
fi
CATEGORY=$2
ONNX_FILE=$3
VNNLIB_FILE=$4
RESULTS_FILE=$5
TIMEOUT=$6

source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
CONFIG_ARGS=()
if [ -f "$SCRIPT_DIR/config/$CATEGORY.toml" ]; then
    CONFIG_ARGS=(--config "$SCRIPT_DIR/config/$CATEGORY.toml")
fi

rm -f "$RESULTS_FILE" 2>/dev/null
"$CERTPRUNE_PY" -m certprune verify "$ONNX_FILE" "$VNNLIB_FILE" --timeout "$TIMEOUT" \
    --results-file "$RESULTS_FILE" --fast-exit "${CONFIG_ARGS[@]}"
CODE=$?
if [ ! -f "$RESULTS_FILE" ] || [ ! -s "$RESULTS_FILE" ]; then
    # certprune could not write an answer (killed, or the results path is unusable): say error
    echo "run_instance.sh: certprune exited with code $CODE and no result file" >&2
    echo "error" > "$RESULTS_FILE" 2>/dev/null || exit 1
fi
exit 0
