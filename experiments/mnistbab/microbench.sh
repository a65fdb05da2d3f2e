#!/bin/sh
# Interleaved main / branch: each instance decided by main's code, then by this worktree's, one
# thread, nice'd; prints one JSON line per run (cpu_seconds = process time of the whole instance).
# Usage (from the worktree): sh experiments/mnistbab/microbench.sh CAP "net:prop,..." > out.jsonl
cap=$1; insts=$2
for i in $(echo "$insts" | tr ',' ' '); do
  for code in /work/main "$PWD"; do
    PYTHONPATH=$code CERTPRUNE_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 \
      /work/main/.venv/bin/python "$PWD/experiments/mnistbab/compare_modes.py" "$cap" "$i" "default="
  done
done
