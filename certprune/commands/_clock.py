"""When did this process start? A ``--timeout`` covers the whole process, interpreter start-up
and imports included, so the budget is counted from the process start (Linux: ``/proc``), not
from the moment the sub-command begins."""
from __future__ import annotations

import time


def process_age(stat_text: str, uptime_text: str, clock_ticks: int) -> float:
    """Seconds since the process started, from ``/proc/self/stat`` (field 22, start time in clock
    ticks after boot; the command name in parentheses may hold spaces) and ``/proc/uptime``."""
    fields = stat_text.rsplit(")", 1)[1].split()
    started = int(fields[19]) / clock_ticks  # fields[0] is field 3 (state), so field 22 is fields[19]
    return max(0.0, float(uptime_text.split()[0]) - started)


def process_start() -> float:
    """``time.monotonic()`` value of the process start (now, where ``/proc`` is not available)."""
    import os

    now = time.monotonic()
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        with open("/proc/uptime") as f:
            uptime = f.read()
        return now - process_age(stat, uptime, os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return now


def is_certprune_process() -> bool:
    """True when this process is the ``certprune`` command itself (``python -m certprune`` or the
    console script), False when certprune.cli.main is called from another program (tests, notebooks)."""
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "certprune.__main__":
        return True
    cli = sys.modules.get("certprune.cli")
    return cli is not None and getattr(main, "main", None) is getattr(cli, "main", None)


def command_start() -> float:
    """Where a ``--timeout`` starts: the process start for the ``certprune`` command, else now."""
    return process_start() if is_certprune_process() else time.monotonic()

