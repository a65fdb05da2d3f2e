#!/bin/bash
# VNN-COMP tool interface: prepare one instance (no analysis happens here).
# usage: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE
# Checks the arguments and that both files exist and are readable; certprune needs no
# per-instance conversion (it reads .onnx / .vnnlib, gzipped or not, directly).
# Exit code 0: ready; 1: wrong arguments or a missing file (the instance is skipped).

VERSION_STRING=v1
if [ "$#" -ne 4 ] || [ "$1" != "$VERSION_STRING" ]; then
    echo "prepare_instance.sh: expected 'v1 CATEGORY ONNX_FILE VNNLIB_FILE', got '$*'" >&2
    exit 1
fi
CATEGORY=$2
ONNX_FILE=$3
VNNLIB_FILE=$4
for f in "$ONNX_FILE" "$VNNLIB_FILE"; do
    if [ ! -f "$f" ] || [ ! -r "$f" ]; then
        echo "prepare_instance.sh: cannot read $f" >&2
        exit 1
    fi
done
echo "certprune: prepared '$CATEGORY' instance $ONNX_FILE / $VNNLIB_FILE"
exit 0
