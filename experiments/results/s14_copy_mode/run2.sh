#!/bin/bash
# usage: run.sh MODEL DATASET PROT TIMEOUT
M=$1; D=$2; P=$3; T=$4
for tree in wt-s14-base wt-s14-copy; do
  out=/tmp/s14copy/$M-$P-$tree
  rm -rf $out
  (cd /work/$tree && PYTHONPATH=/work/$tree CERTPRUNE_DATA=/work/shared/data OMP_NUM_THREADS=1 /work/main/.venv/bin/python -m certprune fairness /work/shared/data/fairness/fairify_models/$M.h5 --dataset $D --protected $P --timeout $T --no-progress --out $out > $out.log 2>&1)
  python3 -c "
import json; s=json.load(open('$out/summary.json')); i=s['individuals']; t=i['total']
print('$M $P $tree', 'fair %.3f unfair %.4f undecided %.3f decided %.3f' % (100*i['fair']/t, 100*i['unfair']/t, 100*i['undecided']/t, 100*(i['fair']+i['unfair'])/t))"
done
