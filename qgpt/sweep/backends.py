"""Where runs run: this process, a local process pool, or a Dask cluster.

Each backend is a concurrent.futures Executor (for Dask: DaskExecutor, a Client's futures),
so execute.run_all treats them alike. Runs are deterministic, so the results do not depend
on the backend; only the timings do.

    --jobs 1                   this process, in order
    (default)                  a pool of --jobs processes, forked on Linux (no Dask needed)
    --scheduler local          a dask.distributed LocalCluster of --jobs worker processes
    --scheduler tcp://HOST:PORT a running Dask scheduler (dask scheduler / dask worker,
                               dask-jobqueue, dask-ssh): see docs/CLUSTER.md

On Dask, a run whose worker dies is run again on another worker (the scheduler's
allowed-failures, set to RETRIES for a LocalCluster) and a run that raises is retried
RETRIES times (Dask's retries); if it fails again the sweep reports it and carries on.
"""

import logging
import multiprocessing
import os
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager

from qgpt.sweep.config import SweepError

RETRIES = 1  # Dask: runs again after a failure, before it is reported
CONNECT_TIMEOUT = 10  # seconds to reach a --scheduler address


def default_jobs():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class InlineExecutor(Executor):
    """Runs each submitted call when its result is asked for, in this process: --jobs 1
    keeps the order of submission and shows a run's exception with its traceback."""

    def __init__(self):
        self.pending = []

    def submit(self, fn, *args, **kwargs):
        future = Future()
        self.pending.append((future, fn, args, kwargs))
        return future

    def completed(self, futures):
        for future, fn, args, kwargs in self.pending:
            if future.set_running_or_notify_cancel():
                future.set_result(fn(*args, **kwargs))
                yield future
        self.pending = []


class DaskExecutor(Executor):
    """Submits to a dask.distributed Client and hands back its own Futures, whose result()
    is the Client's: a finished run whose worker then dies (taking the result with it) is
    computed again and waited for. (distributed's ClientExecutor copies each result into a
    concurrent.futures Future and reads the Dask future's status afterwards; when the
    worker dies in between, the status is "pending" again and the finished run's result is
    raised as an error: "not enough values to unpack (expected 3, got 2)".)"""

    def __init__(self, client):
        self.client = client

    def submit(self, fn, *args, **kwargs):
        return self.client.submit(fn, *args, pure=False, retries=RETRIES, **kwargs)

    def completed(self, futures):
        from distributed import as_completed

        return as_completed(list(futures))


def pool_context():
    """How the process pool starts its workers. On Linux, fork: each worker is a copy of
    this process, with numpy, qgpt and the dataset loaded (execute.load_dataset) and
    nothing to import, where a spawned one spends about a third of a second importing them
    before its first run. Elsewhere spawn, a fresh interpreter per worker (macOS's system
    libraries and Windows do not fork safely)."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


@contextmanager
def open_backend(jobs, scheduler, total, connect_timeout=None):
    """Yields (executor, what it is in words, retries failures: bool). connect_timeout:
    seconds to reach a scheduler's address (default CONNECT_TIMEOUT)."""
    if scheduler is None:
        if jobs == 1:
            yield InlineExecutor(), "1 process", False
            return
        n = min(jobs, total)
        with ProcessPoolExecutor(n, mp_context=pool_context()) as pool:
            try:
                yield pool, f"{n} processes", False
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return
    client, cluster = _dask_client(scheduler, jobs, connect_timeout or CONNECT_TIMEOUT)
    try:
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        where = "a LocalCluster" if cluster is not None else f"the Dask scheduler {scheduler}"
        yield (DaskExecutor(client), f"{where} with {workers} worker{'s' * (workers != 1)}",
               True)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_scheduler(scheduler):
    """SweepError (one line) for a --scheduler that cannot work, before anything is made."""
    if scheduler is None:
        return
    if scheduler != "local" and "://" not in scheduler:
        raise SweepError(f"--scheduler {scheduler}: want local or an address like "
                         "tcp://HOST:8786")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SweepError("--scheduler needs Dask: pip install 'qgpt[dask]' "
                         "(or dask[distributed])") from None


def _dask_client(scheduler, jobs, connect_timeout):
    """A dask.distributed Client of scheduler ("local" or an address), and the LocalCluster
    it started (or None); SweepError in one line when Dask is missing or unreachable."""
    check_scheduler(scheduler)
    import dask
    from distributed import Client, LocalCluster

    if scheduler == "local":
        # a run whose worker dies runs once more elsewhere before it counts as failed; a
        # worker holds one run at a time, so its death costs no other run
        with dask.config.set({"distributed.scheduler.allowed-failures": RETRIES,
                              "distributed.scheduler.worker-saturation": 1.0}):
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
        return Client(cluster), cluster
    # connection attempts log warnings until the timeout: the one line below says it all
    quiet = [logging.getLogger(n) for n in ("distributed.comm", "distributed.client",
                                            "distributed.core")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        return Client(scheduler, timeout=connect_timeout), None
    except (OSError, TimeoutError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SweepError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there "
                         f"({reason}); start one (dask scheduler, docs/CLUSTER.md) or fix the "
                         "address") from None
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
