"""The one search loop: :func:`run_search` drives every branch and bound of certprune.

Two searches run on it, each over its own domains and with its own round:
- ``bab.BranchAndBound`` (``verify``, ``certify``): domains are real input boxes with ReLU splits;
  it stops at the first confirmed counterexample or when every domain is refuted.
- ``fairness_bab.TwinBab`` (``audit_fairness``): domains are integer units of many partitions;
  it counts the individuals each round decides and stops when none is open, or once the open
  ones are within the undecided tolerance.

What differs is the domain and the round, not the loop: a search takes a batch, bounds it on the
graph engine, decides what the bounds (or an exact leaf: LP, MILP, z3, enumeration) close and
queues the children of the rest, until nothing is pending, it has its answer, or the deadline
(``time.monotonic`` seconds; None: none) passes. The deadline is checked between rounds; each
search sizes its rounds so that one stays well inside the time left.
"""
from __future__ import annotations

import time
from typing import Protocol, TypeVar

Outcome = TypeVar("Outcome", covariant=True)


class Search(Protocol[Outcome]):
    """What :func:`run_search` needs of a search."""

    def start(self) -> None:
        """Bound or load the root domains."""

    def pending(self) -> bool:
        """Whether domains are left to process."""

    def stopped(self) -> bool:
        """Whether the search has its answer although domains are pending (a confirmed
        counterexample, the undecided tolerance reached, a leaf that ran out of time)."""

    def step(self) -> None:
        """One round: take a batch of domains, bound and branch them, settle the children."""

    def finish(self, timed_out: bool) -> Outcome:
        """The outcome; ``timed_out``: the loop stopped at the deadline with domains pending."""


def run_search(search: Search[Outcome], deadline: float | None) -> Outcome:
    """Start ``search`` and run its rounds until nothing is pending, it stopped, or ``deadline``."""
    search.start()
    while search.pending() and not search.stopped():
        if deadline is not None and time.monotonic() > deadline:
            return search.finish(True)
        search.step()
    return search.finish(False)
