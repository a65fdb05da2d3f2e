"""Progress lines on stderr for long verifications: the callback given to ``verify``.

With ``verbose`` every phase is printed as it starts and branch and bound reports once a second;
without it nothing is printed during the first ``quiet_for`` seconds, then one line every
``every`` seconds, so short runs stay silent and long ones show that they are working.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressPrinter:
    """Callable ``progress(event)`` that writes throttled one-line reports to ``stream``."""

    def __init__(self, start: float, verbose: bool = False, quiet_for: float = 5.0, every: float = 5.0,
                 stream: TextIO | None = None):
        self.start, self.verbose, self.quiet_for = start, verbose, quiet_for
        self.every = 1.0 if verbose else every
        self.stream = stream
        self._last = -float("inf")

    def __call__(self, event: dict) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        is_phase = event.get("phase") != "bab" or event.get("processed") == 0
        if self.verbose and is_phase:
            self._write(elapsed, event)
        elif (self.verbose or elapsed >= self.quiet_for) and now - self._last >= self.every:
            self._write(elapsed, event)
            self._last = now

    def _write(self, elapsed: float, event: dict) -> None:
        print(f"certprune: {elapsed:7.1f} s  {describe(event)}", file=self.stream or sys.stderr, flush=True)


def describe(event: dict) -> str:
    """One human line for a progress event."""
    phase = event.get("phase", "?")
    if phase == "bab" and event.get("processed"):
        bound = event.get("bound")
        bound_text = "n/a" if bound is None else f"{bound:.6g}"
        return (f"branch and bound: {event.get('domains', 0)} domains queued, {event['processed']} bounded, "
                f"global lower bound {bound_text} (> 0 proves the property)")
    if phase == "property":
        return f"input box {event['index']} of {event['of']}"
    names = {"load": "loading model and property", "falsify": "falsifying (sampling + PGD)",
             "bound": "bounding the whole region (CROWN / alpha-CROWN)", "bab": "branch and bound"}
    return names.get(phase, phase)
