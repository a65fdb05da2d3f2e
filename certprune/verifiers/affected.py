"""Who is affected: exact per-individual checks of real records, and a sampled estimate of the
unfair share of the domain with a confidence interval.

An individual x is unfair when some partner x' of the domain (another protected value, relaxed
features within delta, the rest equal) gets the other decision under the audit's semantics
(``decide`` is :meth:`TwinBab.decide_points`: real-arithmetic decisions under ``exact``, float32
decisions of the original model with each input run alone under ``float32``), the same decisions
the audit counts with. The check enumerates every partner, so it is exact.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from certprune.errors import SpecError
from certprune.fairness_spec import FairnessSpec
from certprune.verifiers.twin import protected_values


def _partner_moves(spec: FairnessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(protected values (K, p), relaxed offsets (K, r)) of every candidate partner move."""
    vals = np.array(protected_values(spec), dtype=np.float64)
    combos = list(itertools.product(*[range(-d, d + 1) for d in spec.relaxed_deltas]))  # [()] when none
    offs = np.array(combos, dtype=np.float64).reshape(len(combos), len(spec.relaxed))
    k = np.array(list(itertools.product(range(len(vals)), range(len(offs)))))
    return vals[k[:, 0]], offs[k[:, 1]]


Decide = Callable[[np.ndarray], np.ndarray]  # points (N, n) -> per-individual decisions (N,)


def unfair_individuals(decide: Decide, spec: FairnessSpec, X: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """Per row of ``X`` (integer points of the domain): is the individual unfair? (exact)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.shape[1] != spec.num_features:
        raise SpecError(f"records have {X.shape[1]} features, the domain {spec.num_features}")
    if np.any(X != np.round(X)) or np.any(X < spec.lower) or np.any(X > spec.upper):
        raise SpecError("records must be integer points inside the fairness domain")
    vals, offs = _partner_moves(spec)
    prot, rel = list(spec.protected_indices), list(spec.relaxed_indices)
    out = np.zeros(len(X), dtype=bool)
    per = max(1, chunk // max(1, len(vals)))
    for s in range(0, len(X), per):
        x = X[s:s + per]
        P = np.repeat(x[:, None, :], len(vals), axis=1)
        P[:, :, prot] = vals[None]
        P[:, :, rel] += offs[None]
        ok = np.any(P[:, :, prot] != x[:, None, prot], axis=2) & np.all((P >= spec.lower) & (P <= spec.upper), axis=2)
        dx = decide(x)
        dp = np.zeros(ok.shape, dtype=bool)
        dp[ok] = decide(P[ok])
        out[s:s + per] = np.any(ok & (dp != dx[:, None]), axis=1)
    return out


@dataclass(frozen=True)
class ShareEstimate:
    """Sampled unfair share of the domain: ``unfair`` of ``samples`` uniform integer points, with a
    ``confidence`` Wilson interval [low, high] (scipy.stats.binomtest)."""

    samples: int
    unfair: int
    share: float
    low: float
    high: float
    confidence: float

    def as_dict(self) -> dict:
        return {"samples": self.samples, "unfair": self.unfair, "share": self.share, "low": self.low,
                "high": self.high, "confidence": self.confidence, "method": "wilson"}


def sample_points(spec: FairnessSpec, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` uniform integer points of the domain (N, n), float64."""
    rng = np.random.default_rng(seed)
    return rng.integers(spec.lower, spec.upper + 1, size=(samples, spec.num_features)).astype(np.float64)


def share_estimate(unfair: np.ndarray, confidence: float = 0.95) -> ShareEstimate:
    """Unfair share of uniform samples with its Wilson interval."""
    from scipy.stats import binomtest
    n, k = int(len(unfair)), int(np.sum(unfair))
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return ShareEstimate(n, k, k / n, float(ci.low), float(ci.high), confidence)


def sample_unfair_share(decide: Decide, spec: FairnessSpec, samples: int = 10000, seed: int = 0,
                        confidence: float = 0.95) -> ShareEstimate:
    """Estimate the unfair share of the domain from ``samples`` uniform integer points."""
    X = sample_points(spec, samples, seed)
    return share_estimate(unfair_individuals(decide, spec, X), confidence)


def affected_records(decide: Decide, spec: FairnessSpec, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unfair mask, in-domain mask) of real records; records outside the domain are skipped."""
    X = np.asarray(X, dtype=np.float64)
    inside = np.all((X >= spec.lower) & (X <= spec.upper), axis=1) & np.all(X == np.round(X), axis=1)
    mask = np.zeros(len(X), dtype=bool)
    if inside.any():
        mask[inside] = unfair_individuals(decide, spec, X[inside])
    return mask, inside
