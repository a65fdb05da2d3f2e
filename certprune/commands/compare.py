"""``certprune compare MODEL [MODEL ...] (--dataset NAME | --data FILE) --eps E [-n N] --out DIR``.

Certifies a dense model and its pruned variants on the same samples and writes one table
(``DIR/compare.csv``, ``DIR/compare.md``, printed too) with params, non-zeros, MACs, clean / PGD
accuracy, unstable ReLUs per input, certified accuracy by bounds and by branch and bound and the
verification time per input (``certprune.verifiers.compare``), the plots ``cert_vs_sparsity.png``
and ``verify_time.png`` and ``report.html``. The first MODEL is the reference for sparsity; a
pruning manifest (ONNX metadata or ``NAME.manifest.json``) names each model's method and amount.
Each model's samples go to its own certify store ``DIR/<name>/`` (samples.csv, adversarial/...),
so a rerun resumes. Data options, ``--workers`` and ``--ray`` are those of ``certify``. Exit code
0 when the run finished, 2 on bad input.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands.certify import add_data_arguments, add_run_arguments
    p.add_argument("models", nargs="+", metavar="MODEL", help="model files, the dense reference first "
                                                              "('default' as in certify)")
    add_data_arguments(p)
    add_run_arguments(p)
    p.add_argument("--out", required=True, help="output folder (tables, plots, report.html, one store per model)")


def run(args: argparse.Namespace) -> int:
    from certprune.commands.certify import check_run_arguments, fit_inputs, load_inputs, load_network
    from certprune.report.compare_report import console_table, write_outputs
    from certprune.verifiers.compare import compare_models, store_names
    from certprune.verifiers.store_lock import ensure_dir

    inputs = load_inputs(args)
    check_run_arguments(args, inputs)
    names = store_names(args.models)
    nets = {n: load_network(m, args) for n, m in zip(names, args.models)}
    X = fit_inputs(inputs, next(iter(nets.values())))
    out = ensure_dir(args.out)
    res = compare_models(nets, X, inputs.y[inputs.start:inputs.stop], args.eps, out,
                         paths=dict(zip(names, args.models)), indices=range(inputs.start, inputs.stop),
                         timeout=args.timeout, clip=inputs.clip, dataset=inputs.name, workers=args.workers,
                         ray_address=args.ray, progress=not args.no_progress,
                         config={"semantics": args.semantics})
    query = {"dataset": inputs.name, "eps": args.eps, "n": inputs.stop - inputs.start, "timeout": args.timeout,
             "semantics": args.semantics}
    paths = write_outputs(out, res.table, res.rows, query)
    print(f"{inputs.name} samples {inputs.start}..{inputs.stop - 1} (n={query['n']}), eps={args.eps:g}, "
          f"timeout {args.timeout:g} s/sample, semantics {args.semantics}")
    print(console_table(res.table))
    print(f"-> {paths['md']}, {paths['html']}")
    return 0
