"""Running the partition engine serially, in local worker processes, or on a Ray cluster; and
:func:`map_items`, the same three runners for independent items (certify's samples, bench's
instances).

All three run the same :class:`TwinBab` on disjoint sets of partitions, so verdicts do not depend
on the runner (the engine is sound and complete per partition; only which counterexample is found
first may differ). Local workers are forked and write their finished partitions straight into the
SQLite store; Ray tasks return their outcomes and the driver writes them.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from certprune.errors import ConfigError


MAX_WORKERS_PER_CPU = 4  # local processes beyond this many per CPU only cost memory (each forks the model)


def check_workers(workers, ray_address: str | None = None, name: str = "workers") -> None:
    """ConfigError unless ``workers`` is an integer >= 1, at most MAX_WORKERS_PER_CPU x this machine's
    CPUs for local processes (a Ray cluster's size is its own), and not > 1 together with Ray."""
    import os

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {workers!r}")
    if ray_address is not None and workers != 1:
        raise ConfigError(f"give either {name} N (local processes) or a Ray address, not both")
    cpus = os.cpu_count() or 1
    if ray_address is None and workers > MAX_WORKERS_PER_CPU * cpus:
        raise ConfigError(f"{name} = {workers} local processes on a machine with {cpus} CPUs; at most "
                          f"{MAX_WORKERS_PER_CPU * cpus} (use a Ray cluster for more)")


@dataclass
class Job:
    """Everything a worker needs: a factory for the engine, the partitioning and the deadline
    (``time.monotonic`` seconds; Ray tasks get the remaining seconds instead), and the open
    individuals the whole job may leave (the undecided tolerance; each runner splits it evenly
    across the shards it starts, so the shares add up to at most this)."""

    make_engine: Callable
    partitioning: object
    deadline: float
    tolerance_points: float = 0.0  # the job may stop once at most this many individuals are open


def _run_shard(job: Job, pids: np.ndarray, on_done: Callable, shards: int = 1,
               on_progress: Callable | None = None) -> None:
    """Run the engine on ``pids``, one of ``shards`` shards (its share of the job's tolerance);
    ``on_progress`` becomes the engine's per-round callback (serial runs: it runs in the caller)."""
    import torch
    torch.set_num_threads(1)  # one process per core; torch's own pool fights the workers
    engine = job.make_engine()
    engine.on_progress = on_progress
    lo, hi = job.partitioning.bounds(pids)
    engine.run(pids, lo, hi, job.deadline, on_done, tolerance_points=job.tolerance_points / max(1, shards))


def run_serial(job: Job, pids: np.ndarray, on_done: Callable, on_progress: Callable | None = None) -> None:
    """Decide ``pids`` in this process (one shard: the whole tolerance; ``on_progress(fair,
    unfair)`` is called after every round). Forked and Ray workers take no such callback: it
    could not reach the caller."""
    if len(pids):
        _run_shard(job, pids, on_done, on_progress=on_progress)


def _local_worker(job: Job, pids: np.ndarray, open_store: Callable, shards: int) -> None:
    store = open_store()
    _run_shard(job, pids, store.write, shards)
    store.close()


def run_local(job: Job, pids: np.ndarray, workers: int, open_store: Callable, poll: Callable[[], None]) -> None:
    """Decide ``pids`` in ``workers`` forked processes (interleaved shards); each writes its own
    rows through ``open_store()``; ``poll`` is called every half second (progress bar)."""
    ctx = mp.get_context("fork")
    shards = [pids[k::workers] for k in range(workers) if len(pids[k::workers])]
    procs = [ctx.Process(target=_local_worker, args=(job, s, open_store, len(shards)), daemon=True) for s in shards]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            poll()
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    poll()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} fairness worker(s) failed (exit codes {bad})")


def _ray_task(job: Job, pids: np.ndarray, seconds: float, shards: int) -> list:
    job.deadline = time.monotonic() + seconds
    outs: list = []
    _run_shard(job, pids, outs.extend, shards)
    return outs


def run_ray(job: Job, pids: np.ndarray, address: str, on_done: Callable, chunks: int = 64) -> None:
    """Decide ``pids`` as Ray tasks on the cluster at ``address`` (``ray.init(address=...)``)."""
    ray = _ray(address)
    task = ray.remote(_ray_task)
    seconds = max(0.0, job.deadline - time.monotonic())
    job = Job(job.make_engine, job.partitioning, job.deadline, job.tolerance_points)  # no callback to ship
    parts = [s for s in np.array_split(pids, min(chunks, max(1, len(pids)))) if len(s)]
    refs = [task.remote(job, s, seconds, len(parts)) for s in parts]
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        on_done(ray.get(ready[0]))


# -- a plain map over independent items (certify's samples, bench's instances): same three runners,
# results in completion order; only the calling process writes results.

def map_items(fn: Callable, items: list, workers: int = 1, ray_address: str | None = None) -> Iterator:
    """Yield ``fn(item)`` for every item: in this process (``workers == 1``), in ``workers`` forked
    processes (interleaved shards, results sent back over a queue), or as Ray tasks at
    ``ray_address``. Order: serial keeps the item order; the others yield as results arrive."""
    if ray_address is not None:
        return _map_ray(fn, items, ray_address)
    if workers <= 1 or len(items) <= 1:
        return (fn(it) for it in items)
    return _map_local(fn, items, workers)


def _map_worker(fn: Callable, shard: list, queue) -> None:
    import torch
    torch.set_num_threads(1)
    for it in shard:
        queue.put(fn(it))


def _map_local(fn: Callable, items: list, workers: int) -> Iterator:
    import queue as queue_mod
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_map_worker, args=(fn, items[k::workers], q), daemon=True)
             for k in range(min(workers, len(items)))]
    for p in procs:
        p.start()
    try:
        for _ in range(len(items)):
            while True:
                try:
                    yield q.get(timeout=0.5)
                    break
                except queue_mod.Empty:
                    bad = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                    if bad:
                        raise RuntimeError(f"{len(bad)} worker(s) failed (exit codes {bad})") from None
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _ray_chunk(fn: Callable, chunk: list) -> list:
    return [fn(it) for it in chunk]


def _map_ray(fn: Callable, items: list, address: str, chunks: int = 64) -> Iterator:
    ray = _ray(address)
    task = ray.remote(_ray_chunk)
    bounds = np.array_split(np.arange(len(items)), min(chunks, max(1, len(items))))
    refs = [task.remote(fn, [items[i] for i in b]) for b in bounds if len(b)]
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        yield from ray.get(ready[0])


def _ray(address: str):
    """The ``ray`` module, connected to ``address`` (ConfigError when the extra is not installed)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the optional Ray extra: pip install 'certprune[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    return ray
