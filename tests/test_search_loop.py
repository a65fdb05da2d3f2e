"""The one search loop (verifiers.search.run_search) and the two searches that run on it."""
import time

from certprune.verifiers.bab import BranchAndBound
from certprune.verifiers.fairness_bab import TwinBab
from certprune.verifiers.search import run_search


class Countdown:
    """A search with ``n`` domains, one per step; ``stop_at``: answer found after that many steps."""

    def __init__(self, n, stop_at=None, sleep=0.0):
        self.n, self.stop_at, self.sleep, self.steps, self.log = n, stop_at, sleep, 0, []

    def start(self):
        self.log.append("start")

    def pending(self):
        return self.steps < self.n

    def stopped(self):
        return self.stop_at is not None and self.steps >= self.stop_at

    def step(self):
        time.sleep(self.sleep)
        self.steps += 1

    def finish(self, timed_out):
        self.log.append(("finish", timed_out))
        return self.steps


def test_runs_until_nothing_is_pending():
    s = Countdown(5)
    assert run_search(s, None) == 5 and s.log == ["start", ("finish", False)]


def test_stops_at_its_answer():
    s = Countdown(5, stop_at=2)
    assert run_search(s, None) == 2 and s.log[-1] == ("finish", False)


def test_deadline_is_checked_between_rounds():
    s = Countdown(10 ** 6, sleep=0.01)
    t0 = time.monotonic()
    steps = run_search(s, t0 + 0.1)
    assert s.log[-1] == ("finish", True) and 1 <= steps < 1000 and time.monotonic() - t0 < 1.0


def test_past_deadline_finishes_timed_out_without_a_round():
    s = Countdown(3)
    assert run_search(s, time.monotonic() - 1) == 0 and s.log[-1] == ("finish", True)


def test_both_searches_implement_the_loop_interface():
    for cls in (BranchAndBound, TwinBab):
        for name in ("start", "pending", "stopped", "step", "finish"):
            assert callable(getattr(cls, name, None)), (cls.__name__, name)
