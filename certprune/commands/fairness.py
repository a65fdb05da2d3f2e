"""``certprune fairness MODEL --dataset NAME --protected ATTR [--relax ATTR=DELTA ...]
[--partition-size T] [--semantics exact|float32] [--undecided-tolerance P] [--timeout S]
[--workers N] [--ray ADDRESS] [--data-dir D] --out DIR``.

Counts individuals: proven fair, proven unfair, undecided (exact integers). Without
``--partition-size`` the whole domain is one partition. Writes DIR/summary.json, partitions.csv,
counterexamples.csv (+ counterexamples_decoded.csv), report.html and the resumable
DIR/audit.sqlite. Prints the summary table. Exit codes: 0 when the audit is complete (undecided
share <= the tolerance), 3 when more stays undecided, 2 on bad input.

Attribute names are matched ignoring case and ``-`` vs ``_`` (``Race`` = ``race``) and then
written in the schema's lower-case spelling; naming the same attribute twice (``--protected age
--protected age``, or protected and relaxed at once) is an error, not silently merged. With
``--data-dir`` the data set's test split is read from that root and the model's test accuracy is
printed before the audit (a check that model and encoding belong together).
"""
from __future__ import annotations

import argparse

from certprune.semantics import CHOICES

EXIT_UNDECIDED = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands._model_args import add_model_arguments
    add_model_arguments(p)
    p.add_argument("--dataset", required=True, help="adult, german, bank or compas (Fairify's integer domain)")
    p.add_argument("--protected", required=True, action="append",
                   help="protected attribute (repeat for several; a pair must differ on at least one)")
    p.add_argument("--relax", action="append", default=[], metavar="ATTR=DELTA",
                   help="relaxed attribute: |x - x'| <= DELTA (integer), both inside the partition")
    p.add_argument("--partition-size", type=int, default=None,
                   help="Fairify's chunk size T (default: the whole domain as one partition)")
    p.add_argument("--semantics", default=None, choices=CHOICES,
                   help="soundness policy: exact (real-arithmetic network, default) or float32")
    p.add_argument("--undecided-tolerance", type=float, default=0.0, metavar="P",
                   help="stop once at most this share of the domain is undecided (default 0: complete)")
    p.add_argument("--timeout", type=float, default=600.0, help="global budget in seconds (default 600)")
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (default 1; a whole-domain audit is then cut into 8 N pieces)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="run partitions on the Ray cluster at ADDRESS")
    p.add_argument("--data-dir", default=None,
                   help="data root holding fairness/<dataset> (default: none read); prints the model's test accuracy")
    p.add_argument("--records", choices=("test", "train", "both", "none"), default="test",
                   help="real records to check one by one for unfairness (default: the test split)")
    p.add_argument("--samples", type=int, default=10000,
                   help="uniform domain points for the sampled unfair share (default 10000; 0: none)")
    p.add_argument("--map-features", default=None, metavar="A,B",
                   help="two features for the report's map of the sampled unfair share")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, help="output directory (rerunning with it resumes)")


def parse_relax(items: list[str]) -> dict[str, int]:
    """``["age=5", ...]`` -> {"age": 5}; malformed items raise ConfigError."""
    from certprune.errors import ConfigError
    out = {}
    for it in items:
        name, sep, val = it.partition("=")
        if name.strip() in out:
            raise ConfigError(f"--relax {name.strip()} given more than once; name each attribute once")
        try:
            out[name.strip()] = int(val)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--relax expects ATTR=DELTA with an integer DELTA, got {it!r}")
    return out


def attribute_names(schema, protected: list[str], relaxed: dict[str, int]) -> tuple[tuple[str, ...], dict[str, int]]:
    """Canonical (schema) spellings of the protected and relaxed names; ConfigError when a name
    is given twice (in any spelling) or both protected and relaxed."""
    from certprune.errors import ConfigError
    prot = [_canonical(schema, p, "protected attribute") for p in protected]
    twice = sorted({p for p in prot if prot.count(p) > 1})
    if twice:
        raise ConfigError(f"--protected {', '.join(twice)} given more than once; name each attribute once")
    rel: dict[str, int] = {}
    for name, delta in relaxed.items():
        key = _canonical(schema, name, "relaxed attribute")
        if key in rel:
            raise ConfigError(f"--relax {key} given more than once; name each attribute once")
        rel[key] = delta
    both = sorted(set(prot) & set(rel))
    if both:
        raise ConfigError(f"{', '.join(both)} cannot be both --protected and --relax")
    return tuple(prot), rel


def _canonical(schema, name: str, what: str) -> str:
    """The schema's spelling of ``name``, or SpecError naming ``what`` and the valid features."""
    from certprune.errors import DatasetError, SpecError
    try:
        return schema.canonical(name)
    except DatasetError:
        raise SpecError(f"unknown {what} {name!r}; the features are: {', '.join(schema.names)}") from None


def model_test_accuracy(model, dataset: str, data_dir) -> tuple[float, int]:
    """(accuracy, rows) of the model's float32 decisions on the data set's test split (one logit:
    label 1 iff logit > 0; two logits: argmax)."""
    import numpy as np

    from certprune.datasets.tabular import load_tabular
    data = load_tabular(dataset, data_dir)
    data.schema.validate_model_inputs(int(np.prod(model.info.input_shape)))
    out = np.asarray(model.run_float32(data.X_test.astype(np.float32))).reshape(len(data.X_test), -1)
    pred = out[:, 0] > 0 if out.shape[1] == 1 else out.argmax(1) == 1
    return float(np.mean(pred == (data.y_test == 1))), len(data.y_test)


def print_summary(summary: dict, out) -> None:
    """Print the verdict table and where the outputs are."""
    from certprune.report.tables import summary_table
    print(summary_table(summary).to_string(index=False))
    ind = summary["individuals"]
    est, rec = summary.get("sampled_unfair_share"), summary.get("records")
    if est:
        print(f"sampled unfair share {100 * est['share']:.3g}% (95% CI {100 * est['low']:.3g}-{100 * est['high']:.3g}%, "
              f"{est['samples']} points); proven {100 * summary['individual_share']['unfair']:.3g}%-"
              f"{100 * (summary['individual_share']['unfair'] + summary['individual_share']['undecided']):.3g}%")
    if rec:
        print(f"real records: {rec['unfair']} of {rec['in_domain']} in the domain are unfair individuals")
    print(f"{ind['total']} individuals, {summary['partitions']} partitions, {summary['counterexample_pairs']} "
          f"validated counterexample pairs, semantics {summary['semantics']}, {summary['seconds']} s; "
          f"{'complete' if summary['complete'] else 'some individuals undecided'}; outputs in {out}")


def _records(args: argparse.Namespace):
    """The data set's real records asked for by --records (None when none or not available)."""
    import sys

    import numpy as np

    from certprune.datasets.tabular import load_tabular
    from certprune.errors import DatasetError
    if args.records == "none":
        return None
    try:
        data = load_tabular(args.dataset, getattr(args, "data_dir", None))
    except DatasetError as e:
        print(f"note: no real records checked ({e})", file=sys.stderr)
        return None
    parts = {"test": [data.X_test], "train": [data.X_train], "both": [data.X_test, data.X_train]}[args.records]
    return np.concatenate(parts)


def run(args: argparse.Namespace) -> int:
    from certprune.commands._model_args import load_from_args
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    from certprune.verifiers.parallel import check_workers
    check_workers(args.workers, args.ray, "--workers")
    schema = get_schema(args.dataset)
    protected, relaxed = attribute_names(schema, args.protected, parse_relax(args.relax))
    spec = FairnessSpec.from_schema(schema, protected, relaxed, name=args.dataset)
    model = load_from_args(args)
    if args.data_dir is not None:
        acc, rows = model_test_accuracy(model, args.dataset, args.data_dir)
        print(f"test accuracy {acc:.4f} on the {rows} test rows of {args.dataset} ({args.data_dir})")
    records = _records(args)
    res = audit_fairness(model, spec, args.partition_size, timeout=args.timeout, workers=args.workers,
                         ray_address=args.ray, out_dir=args.out, progress=not args.no_progress,
                         semantics=args.semantics, undecided_tolerance=args.undecided_tolerance,
                         records=records, samples=args.samples,
                         map_features=tuple(args.map_features.split(",")) if args.map_features else None)
    print_summary(res.summary, args.out)
    return 0 if res.summary["complete"] else EXIT_UNDECIDED
