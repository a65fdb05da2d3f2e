"""Verdicts and results: what every verifier returns.

SAT/UNSAT words stay inside solver adapters; the only place they appear outside is the VNN-COMP
result file, whose words come from :meth:`Verdict.vnncomp_word`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


class Verdict(str, enum.Enum):
    """CERTIFIED: the property holds on the whole region. FALSIFIED: a counterexample, re-run in
    float32 on the original model, violates it. UNKNOWN: budget spent. ERROR: could not run."""

    CERTIFIED = "certified"
    FALSIFIED = "falsified"
    UNKNOWN = "unknown"
    ERROR = "error"

    def vnncomp_word(self, timed_out: bool = False) -> str:
        """The first line of a VNN-COMP result file: unsat / sat / timeout / unknown / error."""
        if self is Verdict.CERTIFIED:
            return "unsat"
        if self is Verdict.FALSIFIED:
            return "sat"
        if self is Verdict.UNKNOWN:
            return "timeout" if timed_out else "unknown"
        return "error"


def merge(parts: Iterable[Verdict]) -> Verdict:
    """The verdict of a property made of parts (the boxes of a multi-box VNN-LIB instance, the
    partitions of a fairness audit): FALSIFIED as soon as one part is (a validated counterexample
    of a part is one of the whole), CERTIFIED only when there is a part and every part is
    certified, else ERROR where a part could not run, else UNKNOWN."""
    seen = [Verdict(v) for v in parts]
    if Verdict.FALSIFIED in seen:
        return Verdict.FALSIFIED
    if seen and all(v is Verdict.CERTIFIED for v in seen):
        return Verdict.CERTIFIED
    return Verdict.ERROR if Verdict.ERROR in seen else Verdict.UNKNOWN


@dataclass(frozen=True)
class Result:
    """Outcome of one verification query.

    ``counterexample`` is an input of the model's input shape (float32 values that were re-run on
    the original model), ``counterexample_output`` the float32 model output on it. Both are None
    unless the verdict is FALSIFIED. ``stats`` holds timings (seconds per phase), domain counts,
    depth reached, and anything else a back end reports.
    """

    verdict: Verdict
    counterexample: np.ndarray | None = None
    counterexample_output: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    model_hash: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.verdict is Verdict.FALSIFIED and self.counterexample is None:
            raise ValueError("a FALSIFIED result must carry its counterexample")
        if self.verdict is not Verdict.FALSIFIED and self.counterexample is not None:
            raise ValueError("only a FALSIFIED result carries a counterexample")

    @property
    def decided(self) -> bool:
        """True for CERTIFIED or FALSIFIED."""
        return self.verdict in (Verdict.CERTIFIED, Verdict.FALSIFIED)
