"""Is branch-and-bound certified accuracy on the pruning benchmark's convnets limited by the
time per input? (issue 12, the certified-3x target.)

For the dense model and pruned models saved by ``pruning_benchmark.py --cache DIR`` it runs the
one branch-and-bound procedure of the benchmarks (:func:`certprune.pruning.metrics.bab_counts`:
one CROWN pass, then certprune.verify on the images it leaves open) on the first ``-n`` held-out
images (the benchmark's evaluation split) at each ``--timeouts`` value and counts the verdicts: CERTIFIED, FALSIFIED (a counterexample re-run in
float32 on the model, or the image already misclassified) and UNKNOWN (time spent). FALSIFIED is
final, so ``1 - falsified share`` bounds the certified accuracy any verifier can reach at this eps,
whatever the time limit: if that is below 3x the dense model's certified accuracy, the target is
out of reach for that model.

Usage: python experiments/pruning_bab_timeouts.py --net conv --rows dense,magnitude+loss@0.5 \
    --timeouts 2,10,30 -n 20 --cache /tmp/p12_cache --out experiments/results/pruning_recipes
(rows appended to ``bab_timeouts_<net>.csv`` as they finish; a rerun skips those there with the
same model, timeout, eps, -n and ``mode``; rows without a mode are verify-only runs of session 9).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_row(net: str, row: str, cache: Path, args, eps: float) -> torch.nn.Module:
    """The dense model (cached by the benchmark) or a pruned one (pruning_benchmark.pruned_cache:
    ``pruned_<net>_<row>_s<seed>_e<train epochs>_eps<eps>.pt``, pruned at ``eps``)."""
    import pruning_benchmark as pb

    if row == "dense":
        model = pb.build(net)
        model.load_state_dict(torch.load(cache / f"certprune_bench_{net}_s{args.seed}_e{args.train_epochs}.pt",
                                         weights_only=True))
        return model.eval()
    path = pb.pruned_cache(cache, net, row, args.seed, args.train_epochs, eps)
    if not path.is_file():
        raise SystemExit(f"no saved model {path}: run pruning_benchmark.py --nets {net} --cache {cache} "
                         f"--seed {args.seed} --train-epochs {args.train_epochs} (at eps {eps:g}) first")
    return torch.load(path, weights_only=False).eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="conv")
    p.add_argument("--rows", default="dense")
    p.add_argument("--timeouts", default="2,10,30")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--eps", type=float, default=None,
                   help="radius verified, and the benchmark's eps the pruned rows were made at; "
                        "default: 0.08 (conv, mlp), 0.02 (conv-bn)")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "pruning_recipes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-epochs", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from certprune.datasets import load_mnist
    from certprune.pruning.metrics import BAB_MODE, bab_counts

    eps = args.eps if args.eps is not None else (0.02 if args.net == "conv-bn" else 0.08)
    X, y = (torch.from_numpy(a) for a in load_mnist())
    Xte, yte = X[8000:8000 + args.n].reshape(-1, 1, 28, 28), y[8000:8000 + args.n]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bab_timeouts_{args.net}.csv"
    done = set()  # (model, timeout, eps, n, mode) of the rows already there: other settings are a new row
    if path.is_file():
        old = pd.read_csv(path)
        modes = old["mode"].fillna("verify-only") if "mode" in old else ["verify-only"] * len(old)
        done = {(m, float(t), float(e), int(k), md)
                for m, t, e, k, md in zip(old.model, old.timeout, old.eps, old.n, modes)}
    for row in args.rows.split(","):
        model = load_row(args.net, row, args.cache, args, eps)
        for timeout in [float(t) for t in args.timeouts.split(",")]:
            if (row, timeout, float(eps), args.n, BAB_MODE) in done:
                continue
            c = bab_counts(model, Xte, yte, eps, timeout)
            n = c["bab_samples"]
            rec = {"net": args.net, "model": row, "eps": eps, "timeout": timeout, "n": n,
                   "certified": c["bab_cert_acc"], "falsified": c["bab_falsified"] / n,
                   "unknown": c["bab_timeouts"] / n, "by_crown": c["bab_by_crown"] / n,
                   "mean_s": c["bab_s_per_input"], "mode": BAB_MODE}
            table = pd.concat([pd.read_csv(path), pd.DataFrame([rec])]) if path.is_file() else pd.DataFrame([rec])
            table.to_csv(path, index=False)  # rewritten whole: older rows lack the newer columns
            print(f"[{args.net}] {row} @ {timeout:g}s: certified {rec['certified']:.2f} falsified "
                  f"{rec['falsified']:.2f} unknown {rec['unknown']:.2f} ({rec['mean_s']:.1f} s/input)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
