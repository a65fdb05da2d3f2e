"""``certprune bounds MODEL PROPERTY.vnnlib [--method M] [--engine E]``: output bounds over the box.

For every input box of the property it prints each output's lower/upper bound, then, per violation
disjunct ``A y <= b``, a lower bound on ``max_k (A y - b)_k`` computed with ``C = A`` (tighter than
combining the output bounds). If that bound is > 0 for every disjunct, no input in the box can
violate the property; bounds are float64 (see ``certprune.verifiers.bounds``), and a float32
certificate is ``certprune verify``'s job. Exit codes: 0 bounds printed; 2 bad input or an
unavailable engine/method (one line on stderr); 1 internal error in a bound engine.
``--stability`` adds ``certprune.neuron_stability``'s per-layer table (stable ReLUs can be pruned).
"""
from __future__ import annotations

import argparse
import sys

from certprune.commands._model_args import add_model_arguments, load_from_args

METHODS = ("ibp", "crown", "alpha-crown")
ENGINES = ("auto", "native", "lirpa")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("property", help="VNN-LIB 1.0 property file (.vnnlib or .vnnlib.gz)")
    p.add_argument("--method", choices=METHODS, default="crown", help="bound method (default crown)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="native (feed-forward ReLU nets), lirpa (auto_LiRPA) or auto (default)")
    p.add_argument("--stability", action="store_true",
                   help="also print, per ReLU layer, how many neurons are stably active/inactive over the box")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from certprune.vnnlib import property_for_model, read_vnnlib

    net = load_from_args(args)
    shape, n_out = net.info.input_shape, net.info.num_outputs
    props = read_vnnlib(args.property, num_inputs=int(np.prod(shape)), num_outputs=n_out)
    for i, prop in enumerate(props):
        prop = property_for_model(prop, shape, n_out)
        try:
            out, rows = _bounds(net, prop, args.method, args.engine)
        except _EngineFailure as e:
            if getattr(args, "debug", False):
                raise e.__cause__ from None
            print(f"certprune: internal error in the {args.engine} engine: {e}", file=sys.stderr)
            return 1
        _print_box(i, len(props), prop, out, rows, args)
        if args.stability:
            _print_stability(net, prop, args)
    return 0


def _print_stability(net, prop, args) -> None:
    import numpy as np

    from certprune.verifiers.bounds import neuron_stability
    table = neuron_stability(net, np.array(prop.region.lower), np.array(prop.region.upper),
                             method=args.method, engine=args.engine)
    print("ReLU stability over the box:")
    print(table.to_string(index=False))


class _EngineFailure(Exception):
    """An unexpected exception inside a bound engine (reported as exit 1)."""


def _bounds(net, prop, method: str, engine: str):
    """(Bounds on the stacked rows, [per-disjunct lower bounds of A y - b]) for one property box.

    One call bounds ``C y`` with ``C = [I; A_1; A_2; ...]``: the outputs themselves, then every
    disjunct's rows (intermediate bounds are computed once)."""
    import numpy as np

    from certprune.errors import CertpruneError, ConfigError
    from certprune.verifiers.bounds import compute_bounds

    lo, hi = np.array(prop.region.lower), np.array(prop.region.upper)  # writable copies for torch
    n_out = prop.num_outputs
    C = np.vstack([np.eye(n_out)] + [np.array(d.A) for d in prop.disjuncts])
    try:
        out = compute_bounds(net, lo, hi, method=method, engine=engine, C=C)
    except CertpruneError:
        raise
    except ImportError as e:  # an engine or method whose module is missing or does not import
        raise ConfigError(f"bound method {method!r} with engine {engine!r} is not available: {e}") from None
    except Exception as e:  # any other failure inside an engine: one line, exit 1
        raise _EngineFailure(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    lower = out.lower[0].numpy()
    rows, start = [], n_out
    for d in prop.disjuncts:
        rows.append(lower[start:start + len(d.b)] - d.b)
        start += len(d.b)
    return out, rows


def _print_box(i: int, n: int, prop, out, rows, args) -> None:
    import pandas as pd

    if n > 1:
        print(f"input box {i + 1} of {n}")
    print(f"bounds: method {out.method}, engine {out.engine}, {prop.region.dim} inputs")
    n_out = prop.num_outputs
    table = pd.DataFrame({"output": [f"Y_{j}" for j in range(n_out)],
                          "lower": out.lower[0, :n_out].numpy(), "upper": out.upper[0, :n_out].numpy()})
    print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    margins = [float(r.max()) for r in rows]
    for k, m in enumerate(margins):
        print(f"disjunct {k + 1}: max_k (A y - b)_k >= {m:.6g}" + ("  (excluded)" if m > 0 else ""))
    if all(m > 0 for m in margins):
        print("result: the bounds exclude every violation in this box")
    else:
        print("result: inconclusive (bounds do not exclude a violation)")
